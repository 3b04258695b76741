"""SSDLite with a MobileNeXt backbone: the paper's taps, extra layers and default boxes on torchvision's SSD."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil

import onnxruntime
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models.detection.image_list import ImageList

import mobilenext
from helpers import torchrun
from mobilenext.cli import main
from mobilenext.detection.data import VOCDetection, open_detection_data
from mobilenext.detection.engine import DetectionConfig, lr_factor
from mobilenext.detection.export import DetectorGraph, postprocess, read_onnx_settings
from mobilenext.detection.model import AUTHORS_BOXES, create_detector
from mobilenext.detection.settings import PostProcessing
from mobilenext.detection.shapes import SHAPES_CLASSES, write_shapes_voc
from mobilenext.engine.checkpoint import save_checkpoint
from mobilenext.engine.config import list_configs, load_config
from mobilenext.errors import ConfigError, UnknownModelError

MAPS_320 = (20, 10, 5, 3, 2, 1)


def _conv_shapes(module: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(m.weight.shape) for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.fixture(scope="module")
def backbone_weights(tmp_path_factory):
    """A classification MobileNeXt-1.0 with non-default weights, saved as a checkpoint file."""
    torch.manual_seed(0)
    body = mobilenext.create_model("mobilenext_100").eval()
    with torch.no_grad():
        for m in body.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("backbone") / "mnext.pth"
    torch.save(body.state_dict(), path)
    return body, path


def test_mobilenext_taps_inside_blocks_with_the_classifiers_weights(backbone_weights):
    body, path = backbone_weights
    detector = create_detector("ssdlite320_mobilenext_100", backbone_checkpoint=str(path)).eval()
    taps = {}
    # Stride 16: inside the first block of the 576-wide stage, after its expansion (+ReLU6), before its
    # stride-2 depthwise conv. Stride 32: after the last block's expansion, before its final depthwise conv.
    body.blocks[5][0].conv_expand.register_forward_hook(lambda m, i, o: taps.setdefault("16", o))
    body.blocks[7][0].conv_expand.register_forward_hook(lambda m, i, o: taps.setdefault("32", o))
    # The last block then runs to its end (linear depthwise + BN), and its output feeds the extra layers.
    body.blocks[7][0].register_forward_hook(lambda m, i, o: taps.setdefault("last", o))
    x = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        body(x)
        features = detector.backbone(x)
    assert [tuple(f.shape[1:]) for f in features.values()] == [
        (576, 20, 20),
        (1280, 10, 10),
        (512, 5, 5),
        (256, 3, 3),
        (256, 2, 2),
        (128, 1, 1),
    ]
    torch.testing.assert_close(features["0"], taps["16"])
    torch.testing.assert_close(features["1"], taps["32"])
    assert taps["16"].min() >= 0 and taps["16"].max() <= 6  # after the ReLU6
    with torch.no_grad():
        torch.testing.assert_close(features["2"], detector.backbone.extras[0](taps["last"]))
    assert taps["last"].min() < 0  # linear: not the tapped ReLU6 map


def test_mobilenext_extras_are_sandglass_shaped():
    extras = create_detector("ssdlite320_mobilenext_100").backbone.extras
    # depthwise 3x3 stride 2 on the wide input, linear 1x1 reduction (0.2, 0.25, 0.5, 0.5), 1x1 to the output
    assert [_conv_shapes(e) for e in extras] == [
        [(1280, 1, 3, 3), (256, 1280, 1, 1), (512, 256, 1, 1)],
        [(512, 1, 3, 3), (128, 512, 1, 1), (256, 128, 1, 1)],
        [(256, 1, 3, 3), (128, 256, 1, 1), (256, 128, 1, 1)],
        [(256, 1, 3, 3), (128, 256, 1, 1), (128, 128, 1, 1)],
    ]
    for extra in extras:  # the authors' flat Sequential: conv, BN, ReLU6, conv, BN (linear), conv, BN, ReLU6
        kinds = [type(m) for m in extra]
        assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU6, nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d,
                         nn.ReLU6]  # fmt: skip
        assert extra[0].stride == (2, 2) and extra[0].groups == extra[0].in_channels


def test_mobilenetv2_baseline_taps_96_and_1280():
    detector = create_detector("ssdlite320_mobilenetv2_100").eval()
    with torch.no_grad():
        features = detector.backbone(torch.randn(1, 3, 320, 320))
    assert [tuple(f.shape[1:3]) for f in features.values()] == [
        (96, 20),
        (1280, 10),
        (512, 5),
        (256, 3),
        (256, 2),
        (64, 1),
    ]


def test_default_boxes_are_the_authors():
    generator = create_detector("ssdlite320_mobilenext_100").anchor_generator
    assert generator.num_anchors_per_location() == [6] * 6
    images = ImageList(torch.zeros(1, 3, 320, 320), [(320, 320)])
    anchors = generator(images, [torch.zeros(1, 1, f, f) for f in MAPS_320])[0]
    assert len(anchors) == 6 * sum(f * f for f in MAPS_320)  # 3,234
    # First cell of the first map: centre at half a step (16 px), then squares of 45 and sqrt(45 * 120) px,
    # and 45 * sqrt(r) by 45 / sqrt(r) boxes for r = 2, 1/2, 3, 1/3.
    c, s = 8.0, 45.0
    large = math.sqrt(45 * 120)
    expected = [(s, s), (large, large)]
    for r in (2, 3):
        expected += [(s * math.sqrt(r), s / math.sqrt(r)), (s / math.sqrt(r), s * math.sqrt(r))]
    first_cell = torch.tensor([[c - w / 2, c - h / 2, c + w / 2, c + h / 2] for w, h in expected])
    torch.testing.assert_close(anchors[:6], first_cell)
    # The 3x3 map uses the authors' step of 120 px (not 320 / 3): its first centre sits at 60 px.
    start = 6 * sum(f * f for f in MAPS_320[:3])
    box = anchors[start]
    assert float((box[0] + box[2]) / 2) == pytest.approx(60.0)
    assert float(box[2] - box[0]) == pytest.approx(AUTHORS_BOXES["voc"]["min_sizes"][3])

    # COCO's boxes (their *_coco.yaml): max sizes 90..315 and only ratio 2 on the last map, 4 boxes there.
    coco = create_detector("ssdlite320_mobilenext_100", num_classes=81, boxes="coco").anchor_generator
    assert coco.num_anchors_per_location() == [6, 6, 6, 6, 6, 4]
    anchors = coco(images, [torch.zeros(1, 1, f, f) for f in MAPS_320])[0]
    assert len(anchors) == 3232
    last = anchors[-4:]  # the 1x1 map: centre 160 px; squares of 270 and sqrt(270 * 315), then ratio 2 (clipped)
    assert [round(float(b[2] - b[0]), 3) for b in last[:2]] == [270.0, round(math.sqrt(270 * 315), 3)]


def test_train_and_eval_forward_on_any_image_size():
    detector = create_detector("ssdlite_mobilenext_035", num_classes=4, size=128)
    images = [torch.rand(3, 100, 140), torch.rand(3, 128, 128)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]  # no objects: fine
    losses = detector.train()(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        outputs = detector.eval()(images)
        resized = torch.nn.functional.interpolate(images[0][None], (128, 128), mode="bilinear")[0]
        at_input_size = detector([resized])[0]
    assert set(outputs[0]) == {"boxes", "scores", "labels"} and len(outputs[0]["boxes"]) > 0
    # boxes come back in the original image's coordinates: x by 140/128, y by 100/128
    scale = torch.tensor([140 / 128, 100 / 128, 140 / 128, 100 / 128])
    torch.testing.assert_close(outputs[0]["boxes"], at_input_size["boxes"] * scale)


def test_bad_detector_requests():
    with pytest.raises(UnknownModelError, match="unknown detector 'yolo'"):
        create_detector("yolo")
    with pytest.raises(UnknownModelError, match="no SSDLite backbone for 'resnet18'"):
        create_detector("ssdlite_resnet18")
    with pytest.raises(ConfigError, match="counts the background too"):
        create_detector("ssdlite320_mobilenext_100", num_classes=1)


# Every training and test value of the authors' configs (houqb/ssdlite-pytorch-mobilenext configs/*.yaml over
# ssd/config/defaults.py), per process as their configs give them.
AUTHORS_VOC = dict(
    dataset="voc", boxes="voc", train_sets=("2007/trainval", "2012/trainval"), test_set="2007/test", batch_size=24,
    lr=1e-3, lr_scaling="world", iterations=240_000, lr_schedule="multistep", lr_steps=(160_000, 200_000),
    lr_gamma=0.1, warmup_iterations=500, warmup_factor=1 / 3, opt="momentum", momentum=0.9, weight_decay=5e-4,
    weight_decay_all=True, sync_bn=False, normalize="authors", score_thresh=0.01, nms_thresh=0.45, loss="softmax",
    detections_per_img=100, size=320, pipeline="authors",
)  # fmt: skip
AUTHORS_COCO = dict(
    AUTHORS_VOC, dataset="coco", boxes="coco", train_sets=("train2017",), test_set="val2017", batch_size=32,
    lr=0.01, iterations=1_600_000, lr_schedule="cosine", weight_decay=4e-5, sync_bn=True, score_thresh=0.05,
    nms_thresh=0.5, loss="focal",
)  # fmt: skip


@pytest.mark.parametrize(
    ("recipe", "model", "authors"),
    [
        ("ssdlite320_mobilenext_voc", "ssdlite320_mobilenext_100", AUTHORS_VOC),
        ("ssdlite320_mobilenetv2_voc", "ssdlite320_mobilenetv2_100", AUTHORS_VOC),
        ("ssdlite320_mobilenext_coco", "ssdlite320_mobilenext_100", AUTHORS_COCO),
        ("ssdlite320_mobilenetv2_coco", "ssdlite320_mobilenetv2_100", AUTHORS_COCO),
    ],
)
def test_recipes_are_the_authors_configs(recipe, model, authors):
    assert sorted(n for n in list_configs() if n.startswith("ssdlite")) == sorted(
        ["ssdlite320_mobilenetv2_coco", "ssdlite320_mobilenetv2_voc", "ssdlite320_mobilenext_coco",
         "ssdlite320_mobilenext_voc"]
    )  # fmt: skip
    cfg = DetectionConfig(**load_config(recipe, DetectionConfig))
    assert cfg.model == model
    for key, value in authors.items():
        assert getattr(cfg, key) == (pytest.approx(value) if isinstance(value, float) else value), key


def test_lr_schedules_are_the_authors():
    # warm-up from 1/3 over 100 iterations, then x0.1 at each step
    assert lr_factor(0, 100, (1000, 2000), 0.1) == pytest.approx(1 / 3)
    assert lr_factor(50, 100, (1000, 2000), 0.1) == pytest.approx(1 / 3 + 2 / 3 * 0.5)
    assert lr_factor(999, 100, (1000, 2000), 0.1) == 1.0
    assert lr_factor(1000, 100, (1000, 2000), 0.1) == pytest.approx(0.1)
    assert lr_factor(2500, 100, (1000, 2000), 0.1) == pytest.approx(0.01)
    # cosine from iteration 0 (not from the end of warm-up), times the warm-up factor while warming up
    assert lr_factor(50, 100, (), 0.1, 0.5, cosine_over=1000) == pytest.approx(
        0.75 * 0.5 * (1 + math.cos(0.05 * math.pi))
    )
    assert lr_factor(500, 100, (), 0.1, cosine_over=1000) == pytest.approx(0.5)
    assert lr_factor(1000, 100, (), 0.1, cosine_over=1000) == pytest.approx(0.0, abs=1e-12)


def test_data_with_classes_the_reader_does_not_know_is_one_clear_error(tmp_path):
    root = write_shapes_voc(tmp_path, train_images=4, test_images=2)
    with pytest.raises(ConfigError, match="has no objects of the classes aeroplane.*--classes"):
        open_detection_data(root, train_sets=["2007/trainval"])  # the 20 VOC classes by default
    data = open_detection_data(root, train_sets=["2007/trainval"], classes=SHAPES_CLASSES, size=96)
    assert data.kind == "voc" and data.classes == SHAPES_CLASSES and (len(data.train), len(data.test)) == (4, 2)
    with pytest.raises(ConfigError, match="neither VOCdevkit"):
        open_detection_data(tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages")


# --- end to end on a generated VOC-format dataset ----------------------------------------------------------
QUICK = [
    "--model",
    "ssdlite_mobilenext_035",
    "--size",
    "128",
    "--train-sets",
    "2007/trainval",
    "--no-augment",
    "--warmup-factor",
    "0.01",
    "--no-weight-decay-all",
    "--opt",
    "adamw",
    "--lr",
    "0.002",
    "--weight-decay",
    "1e-4",
    "--warmup-iterations",
    "50",
    "-j",
    "0",
]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A short CPU training run (about 100 s) finding squares on textured backgrounds: 480 training images,
    48 held out. One class keeps it short; from scratch, three classes need about twice the iterations."""
    from mobilenext.detection.engine import parse_detect_args, train_detector

    root = write_shapes_voc(tmp_path_factory.mktemp("shapes"), train_images=480, test_images=48, classes=["square"])
    run = tmp_path_factory.mktemp("det") / "run"
    cfg = parse_detect_args(
        [
            *QUICK,
            "--classes",
            "square",
            "--data",
            str(root),
            "-b",
            "16",
            "--iterations",
            "400",
            "--lr-steps",
            "350",
            "--eval-interval",
            "200",
            "--output",
            str(run),
        ]
    )
    return root, run, train_detector(cfg)


def test_short_training_run_detects_held_out_shapes(shapes_run):
    root, run, result = shapes_run
    # An untrained detector scores about 0.01. The trained one's figure depends on the float summation order
    # (threads, CPU): with the authors' head and initialisation (Xavier, PyTorch's BN) 0.07 to 0.13 on these
    # machines after 400 iterations (torchvision's SSDLite head reached 0.19-0.24), so the bar is 5x untrained.
    assert result["map50"] > 0.05 and result["map50_voc07"] > 0.05
    with open(run / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [200, 400]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert all(float(r["map50"]) > 0.05 for r in rows)  # found by iteration 200 already; the order of the two is noise


def test_eval_cli_reproduces_the_logged_map(shapes_run, capsys):
    _, run, result = shapes_run
    assert main(["detect", "eval", str(run / "last.pth"), "-j", "0", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["map50"] == pytest.approx(result["map50"], abs=1e-6) and printed["images"] == 48


def test_predict_cli_draws_boxes_onto_pngs(shapes_run, tmp_path, capsys):
    root, run, _ = shapes_run
    image = root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000481.jpg"  # held out
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    code = main(
        [
            "detect",
            "predict",
            str(image),
            str(broken),
            "--checkpoint",
            str(run / "best.pth"),
            "-o",
            str(tmp_path / "drawn"),
        ]
    )
    assert code == 1  # one image could not be read
    out, err = capsys.readouterr()
    assert "000481.jpg:" in out and "object(s)" in out and "broken.jpg" in err
    drawn = Image.open(tmp_path / "drawn" / "000481.png")
    assert drawn.size == Image.open(image).size and drawn.format == "PNG"


def test_detector_graph_plus_postprocess_reproduces_the_detector(tmp_path, capsys):
    torch.manual_seed(0)
    detector = create_detector("ssdlite_mobilenext_035", num_classes=4, size=128, score_thresh=0.2).eval()
    checkpoint = tmp_path / "det.pth"  # as `detect train` saves it, so the export goes through the CLI
    save_checkpoint(
        {
            "task": "detection",
            "model": "ssdlite_mobilenext_035",
            "classes": ["a", "b", "c"],
            "size": 128,
            "args": {"score_thresh": 0.2},
            "state_dict": detector.state_dict(),
        },
        checkpoint,
    )
    assert main(["detect", "export", str(checkpoint), "-o", str(tmp_path / "d.onnx")]) == 0
    settings = read_onnx_settings(tmp_path / "d.onnx")  # the detector's, in the file for the runtime
    assert settings == PostProcessing.of(detector) and settings.score_thresh == 0.2
    printed = capsys.readouterr().out
    assert float(re.search(r"max \|diff\| (\S+?)\. ", printed).group(1)) < 1e-4  # onnxruntime vs PyTorch
    assert (tmp_path / "d.onnx").stat().st_size > 1e6
    x = torch.rand(2, 3, 128, 128)
    session = onnxruntime.InferenceSession(str(tmp_path / "d.onnx"))
    boxes, scores = session.run(None, {"images": x[:1].numpy()})  # another batch size than the export's
    assert boxes.shape == (1, 6 * (8 * 8 + 4 * 4 + 2 * 2 + 1 + 1 + 1), 4) and scores.shape[-1] == 3
    with torch.no_grad():
        expected = detector(list(x))[1]
        graph_boxes, graph_scores = DetectorGraph(detector, 128)(x)
    torch.testing.assert_close(torch.from_numpy(boxes[0]), graph_boxes[0], rtol=1e-4, atol=1e-3)
    # The documented post-processing on the graph's outputs gives the detector's detections exactly.
    got = postprocess(graph_boxes[1], graph_scores[1], 128, (128, 128), settings=settings)
    assert len(got["boxes"]) > 0 and torch.equal(got["labels"], expected["labels"])
    torch.testing.assert_close(got["boxes"], expected["boxes"])
    torch.testing.assert_close(got["scores"], expected["scores"])

    # The COCO detector's graph scores with its sigmoids (not a softmax), its last column left out.
    focal = create_detector("ssdlite_mobilenext_035", num_classes=4, size=128, loss="focal").eval()
    for weight in focal.head.cls_headers.parameters():  # as if trained: its initial scores are all ~0.01
        weight.data.normal_(0, 0.3)
    normalised = (x - torch.tensor(focal.transform.image_mean).view(1, 3, 1, 1)) / torch.tensor(
        focal.transform.image_std
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        graph_boxes, graph_scores = DetectorGraph(focal, 128)(x)
        logits = focal.head(list(focal.backbone(normalised).values()))["cls_logits"]
        focal.score_thresh = float(graph_scores[0].median())
        expected = focal(list(x))[0]
    torch.testing.assert_close(graph_scores, logits[..., :3].sigmoid())
    got = postprocess(graph_boxes[0], graph_scores[0], 128, (128, 128), settings=PostProcessing.of(focal))
    assert len(got["boxes"]) > 0 and torch.equal(got["labels"], expected["labels"])
    torch.testing.assert_close(got["boxes"], expected["boxes"])


def test_resume_continues_with_the_same_batches_and_bad_images_are_counted(tmp_path, monkeypatch, capsys):
    from mobilenext.detection.engine import parse_detect_args, train_detector

    root = write_shapes_voc(tmp_path / "data", train_images=16, test_images=4)
    jpeg = root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000003.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # truncated: replaced in its batch, counted
    args = [
        *QUICK,
        "--classes",
        *SHAPES_CLASSES,
        "--data",
        str(root),
        "--size",
        "96",
        "-b",
        "4",
        "--eval-interval",
        "2",
        "--lr-steps",
        "100",
    ]
    straight = tmp_path / "straight"
    train_detector(parse_detect_args([*args, "--iterations", "6", "--output", str(straight)]))
    # --resume auto without --output continues the newest run of the model in runs/, not a new folder
    monkeypatch.chdir(tmp_path)
    train_detector(parse_detect_args([*args, "--iterations", "2"]))
    (resumed,) = (tmp_path / "runs").iterdir()
    assert main(["detect", "train", *args, "--iterations", "6", "--resume", "auto"]) == 0
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [resumed.name]
    assert f"resumed runs/{resumed.name}/last.pth: iteration 2." in (resumed / "log.txt").read_text()
    a = torch.load(straight / "last.pth", weights_only=True)
    b = torch.load(resumed / "last.pth", weights_only=True)
    assert a["iteration"] == b["iteration"] == 6
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    with open(straight / "summary.csv", newline="") as f:
        assert sum(int(r["skipped_images"]) for r in csv.DictReader(f)) >= 1
    capsys.readouterr()

    # a resume that would load the weights into another network is one sentence naming the setting
    shapes_args = [a if a != "96" else "128" for a in args]
    changed = {"size": [*shapes_args], "classes": [*args, "--classes", "circle", "square"]}
    for setting, changed_args in changed.items():
        assert main(["detect", "train", *changed_args, "--iterations", "8", "--resume", "auto"]) == 2
        error = capsys.readouterr().err.strip()
        assert f"was trained with another {setting}" in error and len(error.splitlines()) == 1, error


def test_bad_detection_runs_are_one_clear_error(tmp_path, capsys):
    assert main(["detect", "train", "--iterations", "1"]) == 2
    assert "detection needs --data" in capsys.readouterr().err
    classification = tmp_path / "w.pth"
    torch.save({"format": "mobilenext-train-1", "model": "mobilenext_035"}, classification)
    assert main(["detect", "eval", str(classification)]) == 2
    assert "classification checkpoint" in capsys.readouterr().err
    assert main(["detect", "eval", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth does not exist" in capsys.readouterr().err
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(classification.read_bytes()[:40])
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    assert main(["detect", "predict", str(tmp_path / "photo.png"), "--checkpoint", str(truncated)]) == 2
    assert "cut.pth is truncated or corrupt" in capsys.readouterr().err


def test_detector_export_into_a_missing_folder_leaves_nothing(shapes_run, tmp_path, capsys):
    _, run, _ = shapes_run
    assert main(["detect", "export", str(run / "best.pth"), "-o", str(tmp_path / "nowhere" / "d.onnx")]) == 2
    assert "folder" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()
    # A successful CLI export is test_detector_graph_plus_postprocess_reproduces_the_detector's.


def test_two_process_ddp_on_cpu(tmp_path):
    """``torchrun`` runs the same command as DDP (gloo on CPU): ranks split each epoch, rank 0 alone logs."""
    root = write_shapes_voc(tmp_path / "data", train_images=16, test_images=4)
    run = tmp_path / "ddp"
    proc = torchrun(
        "-m",
        "mobilenext",
        "detect",
        "train",
        *QUICK,
        "--classes",
        *SHAPES_CLASSES,
        "--data",
        str(root),
        "--size",
        "96",
        "-b",
        "4",
        "--iterations",
        "3",
        "--eval-interval",
        "3",
        "--lr-steps",
        "100",
        "--output",
        str(run),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("iteration 3/3") == 1 and "batch 4 x 2" in proc.stdout
    state = torch.load(run / "last.pth", weights_only=True)
    assert state["iteration"] == 3 and not any(k.startswith("module.") for k in state["state_dict"])


def _voc_to_coco(voc_root, coco_root, image_set: str, split: str) -> None:
    """The same images and boxes as a COCO folder: ``split/`` images and ``annotations/instances_split.json``."""
    reader = VOCDetection(voc_root, [("2007", image_set)], classes=SHAPES_CLASSES)
    (coco_root / split).mkdir(parents=True)
    (coco_root / "annotations").mkdir(exist_ok=True)
    images, annotations = [], []
    for index, image_id in enumerate(reader.image_ids):
        name = image_id.split("/")[1] + ".jpg"
        shutil.copy(voc_root / "VOCdevkit" / "VOC2007" / "JPEGImages" / name, coco_root / split / name)
        image, target = reader[index]
        images.append({"id": index + 1, "file_name": name, "height": image.shape[1], "width": image.shape[2]})
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": 10 * label,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": 10 * (i + 1), "name": name} for i, name in enumerate(SHAPES_CLASSES)]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (coco_root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))


def test_coco_folder_trains_and_scores_with_coco_ap(tmp_path):
    from mobilenext.detection.engine import parse_detect_args, train_detector

    voc = write_shapes_voc(tmp_path / "voc", train_images=8, test_images=4)
    coco = tmp_path / "coco"
    _voc_to_coco(voc, coco, "trainval", "train2017")
    _voc_to_coco(voc, coco, "test", "val2017")
    data = open_detection_data(coco, size=96)  # found as COCO; the default VOC set names map to its splits
    assert data.kind == "coco" and data.classes == SHAPES_CLASSES and (len(data.train), len(data.test)) == (8, 4)
    result = train_detector(
        parse_detect_args(
            [
                *QUICK,
                "--data",
                str(coco),
                "--size",
                "96",
                "-b",
                "4",
                "--iterations",
                "2",
                "--eval-interval",
                "2",
                "--lr-steps",
                "100",
                "--output",
                str(tmp_path / "run"),
            ]
        )
    )
    assert {"ap", "ap50", "ap75", "map50"} <= set(result) and 0 <= result["ap50"] <= 1
