"""Our SSDLite is the authors' (houqb/ssdlite-pytorch-mobilenext): every key and shape of their checkpoints,
their parameter counts, and their layout converted both ways without a bit changed."""

from __future__ import annotations

import math
import sys

import pytest
import timm
import torch

from conftest import reference_path
from helpers import randomise_norms
from mobilenext.api import restore_model
from mobilenext.detection.authors import from_authors_layout, to_authors_layout
from mobilenext.detection.model import create_detector

# (detector, classes incl. background, default boxes) -> the authors' reference file and parameter count
AUTHORS_DETECTORS = {
    ("ssdlite320_mobilenext_100", 21, "voc"): ("mobilenext_voc0712", 3_476_308),
    ("ssdlite320_mobilenetv2_100", 21, "voc"): ("mobilenetv2_voc0712", 3_425_988),
    ("ssdlite320_mobilenext_100", 81, "coco"): ("mobilenext_coco", 4_539_418),
}


def _reference_shapes(name: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in reference_path(f"official_ssdlite320_{name}_state_dict_shapes.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split("\t")
            shapes[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return shapes


@pytest.fixture(scope="module", params=list(AUTHORS_DETECTORS), ids=lambda p: f"{p[0]}-{p[2]}")
def detector(request):
    name, classes, boxes = request.param
    torch.manual_seed(0)
    return request.param, randomise_norms(create_detector(name, num_classes=classes, boxes=boxes))


def test_keys_shapes_and_parameters_are_the_authors(detector):
    spec, model = detector
    reference, params = AUTHORS_DETECTORS[spec]
    theirs = to_authors_layout(model.state_dict(), model)
    assert {k: tuple(v.shape) for k, v in theirs.items()} == _reference_shapes(reference)
    assert list(theirs) == list(_reference_shapes(reference))  # their order too
    assert sum(p.numel() for p in model.parameters()) == params


def test_their_layout_round_trips_bit_exactly_and_loads(detector):
    spec, model = detector
    name, classes, boxes = spec
    ours = model.state_dict()
    theirs = {f"module.{k}": v for k, v in to_authors_layout(ours, model).items()}  # as saved under DDP
    back = from_authors_layout(theirs, model)
    assert list(back) == list(ours) and all(torch.equal(back[k], ours[k]) for k in ours)

    fresh = create_detector(name, num_classes=classes, boxes=boxes)
    fresh.load_state_dict(back)
    x = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        expected, got = model.eval().backbone(x), fresh.eval().backbone(x)
        for a, b in zip(expected.values(), got.values()):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
        head_a, head_b = model.head(list(expected.values())), fresh.head(list(got.values()))
    for key in head_a:
        torch.testing.assert_close(head_b[key], head_a[key], rtol=0, atol=0)
    priors = sum(m.shape[-1] * m.shape[-2] for m in expected.values())
    boxes_per_cell = model.anchor_generator.num_anchors_per_location()
    assert head_a["cls_logits"].shape[1] == (3234 if boxes == "voc" else 3232)
    assert priors == 539 and boxes_per_cell[-1] == (6 if boxes == "voc" else 4)


def test_their_voc_checkpoint_runs_in_every_detect_command(tmp_path, capsys):
    """A .pth as their code saves it ({"model": ...}, here with DDP's module. prefix) loads through the one
    inference loader, with their preprocessing and post-processing, and exports."""
    from mobilenext.cli import main
    from mobilenext.detection.settings import AUTHORS_MEAN

    torch.manual_seed(1)
    original = randomise_norms(create_detector("ssdlite320_mobilenetv2_100")).eval()
    weights = {f"module.{k}": v for k, v in to_authors_layout(original.state_dict(), original).items()}
    path = tmp_path / "mobilenet_v2_ssd320_voc0712.pth"
    torch.save({"model": weights, "iteration": 60000}, path)

    restored = restore_model(path, task="detection")
    loaded = restored.model
    assert restored.name == "ssdlite320_mobilenetv2_100" and len(restored.classes) == 20
    assert tuple(loaded.transform.image_mean) == AUTHORS_MEAN
    assert (loaded.score_thresh, loaded.nms_thresh, loaded.detections_per_img) == (0.01, 0.45, 100)
    x = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        maps_a, maps_b = original.backbone(x), loaded.backbone(x)
        for a, b in zip(maps_a.values(), maps_b.values()):
            torch.testing.assert_close(b, a, rtol=0, atol=0)

    assert main(["detect", "export", str(path), "-o", str(tmp_path / "theirs.onnx")]) == 0
    assert "max |diff|" in capsys.readouterr().out
    with pytest.raises(Exception, match="is the authors' SSDLite detector, not a classifier"):
        restore_model(path, task="classification")  # predict/validate/export refuse it in one sentence


def test_their_coco_checkpoint_scores_with_sigmoids_and_wrong_files_are_one_sentence(tmp_path, capsys):
    from mobilenext.cli import main
    from mobilenext.detection.model import FocalSSD

    torch.manual_seed(3)
    coco = randomise_norms(create_detector("ssdlite320_mobilenext_100", num_classes=81, boxes="coco", loss="focal"))
    torch.save({"model": to_authors_layout(coco.state_dict(), coco)}, tmp_path / "coco.pth")
    restored = restore_model(tmp_path / "coco.pth", task="detection")
    loaded = restored.model
    assert isinstance(loaded, FocalSSD) and restored.classes[0] == "person" and len(restored.classes) == 80
    assert (loaded.score_thresh, loaded.nms_thresh) == (0.05, 0.5)
    loaded.score_thresh = 0.005  # the heads start at a prior of 0.01: see some boxes
    with torch.no_grad():
        found = loaded([torch.rand(3, 320, 320)])[0]
    assert len(found["labels"]) == 100 and found["labels"].min() >= 1 and found["labels"].max() <= 80
    assert bool(((found["scores"] > 0.005) & (found["scores"] < 0.05)).all())  # sigmoids near the 0.01 prior

    voc = create_detector("ssdlite320_mobilenext_100", num_classes=21)
    odd = to_authors_layout(voc.state_dict(), voc)
    odd["box_head.predictor.cls_headers.5.weight"] = torch.zeros(6 * 11, 128, 1, 1)  # 11 outputs per box
    odd["box_head.predictor.cls_headers.5.bias"] = torch.zeros(6 * 11)
    torch.save({"model": odd}, tmp_path / "odd.pth")
    classifier = tmp_path / "classifier.pth"
    torch.save({"features.0.0.weight": torch.zeros(32, 3, 3, 3)}, classifier)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes((tmp_path / "coco.pth").read_bytes()[:1000])
    expected = {
        "odd.pth": "11 outputs per box and 6 boxes on the last map, which is neither their VOC detector",
        "classifier.pth": "is a classification weights file, not a detector",
        "cut.pth": "is truncated or corrupt",
    }
    for name, message in expected.items():
        assert main(["detect", "export", str(tmp_path / name), "-o", str(tmp_path / "x.onnx")]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "x.onnx").exists()


def test_focal_loss_is_theirs():
    """Their COCO loss, computed here from its definition: sigmoid focal (alpha 0.25, gamma 2) over every box
    and class column (class c in column c - 1, background all zeros), x5, over the matched boxes."""
    from torchvision.models.detection.image_list import ImageList
    from torchvision.ops import box_iou

    torch.manual_seed(4)
    model = create_detector("ssdlite_mobilenext_035", num_classes=4, size=128, boxes="coco", loss="focal").eval()
    batch, targets = model.transform(
        [torch.rand(3, 128, 128)], [{"boxes": torch.tensor([[10.0, 20.0, 70.0, 100.0]]), "labels": torch.tensor([2])}]
    )
    with torch.no_grad():
        maps = list(model.backbone(batch.tensors).values())
        head = model.head(maps)
        anchors = model.anchor_generator(ImageList(batch.tensors, batch.image_sizes), maps)
        matched = model.proposal_matcher(box_iou(targets[0]["boxes"], anchors[0]))
        losses = model.compute_loss(targets, head, anchors, [matched])
    wanted = torch.zeros_like(head["cls_logits"][0])
    wanted[matched >= 0, 2 - 1] = 1.0
    p = head["cls_logits"][0].sigmoid()
    p_t = p * wanted + (1 - p) * (1 - wanted)
    alpha_t = 0.25 * wanted + 0.75 * (1 - wanted)
    focal = (-alpha_t * (1 - p_t) ** 2 * torch.log(p_t)).sum()
    assert int((matched >= 0).sum()) > 0
    torch.testing.assert_close(losses["classification"], 5 * focal / (matched >= 0).sum(), rtol=1e-4, atol=1e-5)


# ---- a reference built here from the authors' documented layer order (their code is not imported) ----------
class _AuthorsSSDLiteMobileNeXtVOC(torch.nn.Module):
    """Their ``SSDDetector`` for MobileNeXt on VOC, module for module: ``backbone.features`` (their classifier's
    trunk), ``backbone.extras`` (flat Sequentials: dw3x3 s2, BN, ReLU6, 1x1, BN, 1x1, BN, ReLU6) and
    ``box_head.predictor`` (separable heads on maps 0-4, a 1x1 conv on map 5), with their forward."""

    EXTRAS = ((1280, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 128))  # in, hidden, out
    MAPS = (576, 1280, 512, 256, 256, 128)

    def __init__(self) -> None:
        from torch import nn

        from mobilenext.models.official_model import OfficialMobileNeXt

        super().__init__()
        self.backbone, self.box_head = nn.Module(), nn.Module()
        self.backbone.features = OfficialMobileNeXt().features
        self.backbone.extras = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(i, i, 3, 2, 1, groups=i, bias=False), nn.BatchNorm2d(i), nn.ReLU6(True),
                nn.Conv2d(i, h, 1, bias=False), nn.BatchNorm2d(h),
                nn.Conv2d(h, o, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU6(True),
            )
            for i, h, o in self.EXTRAS
        )  # fmt: skip

        def predictor(level: int, out: int) -> nn.Module:
            c = self.MAPS[level]
            if level == 5:
                return nn.Conv2d(c, out, 1)
            holder = nn.Module()
            holder.conv = nn.Sequential(
                nn.Conv2d(c, c, 3, 1, 1, groups=c), nn.BatchNorm2d(c), nn.ReLU6(), nn.Conv2d(c, out, 1)
            )
            return holder

        self.box_head.predictor = nn.Module()
        self.box_head.predictor.cls_headers = nn.ModuleList(predictor(k, 6 * 21) for k in range(6))
        self.box_head.predictor.reg_headers = nn.ModuleList(predictor(k, 6 * 4) for k in range(6))

    def forward(self, x: torch.Tensor):
        features = self.backbone.features
        for block in features[:13]:
            x = block(x)
        tap16 = features[13].conv[:5](x)  # after the 1x1 expansion + ReLU6, before the stride-2 depthwise conv
        x = features[13].conv[5:](tap16)
        for block in features[14:20]:
            x = block(x)
        tap32 = features[20].conv[:8](x)  # after the last block's expansion + ReLU6
        x = features[20].conv[8:](tap32)  # the block runs to its end; its output feeds the extras
        maps = [tap16, tap32]
        for extra in self.backbone.extras:
            x = extra(x)
            maps.append(x)
        heads = self.box_head.predictor
        run = lambda head, m: head.conv(m) if hasattr(head, "conv") else head(m)  # noqa: E731
        cls = torch.cat(
            [run(h, m).permute(0, 2, 3, 1).reshape(len(x), -1, 21) for h, m in zip(heads.cls_headers, maps)], 1
        )
        reg = torch.cat(
            [run(h, m).permute(0, 2, 3, 1).reshape(len(x), -1, 4) for h, m in zip(heads.reg_headers, maps)], 1
        )
        return maps, cls, reg


def _authors_priors() -> torch.Tensor:
    """Their PriorBox for the VOC config, centre form (cx, cy, w, h) in [0, 1]."""
    priors = []
    for f, step, small, large in zip((20, 10, 5, 3, 2, 1), (16, 32, 64, 120, 160, 320), (45, 90, 135, 180, 225, 270),
                                     (120, 180, 220, 260, 300, 320)):  # fmt: skip
        for i in range(f):
            for j in range(f):
                cx, cy, s = (j + 0.5) * step / 320, (i + 0.5) * step / 320, small / 320
                boxes = [(s, s), ((small * large) ** 0.5 / 320,) * 2]
                for r in (2, 3):
                    boxes += [(s * r**0.5, s / r**0.5), (s / r**0.5, s * r**0.5)]
                priors += [(cx, cy, w, h) for w, h in boxes]
    return torch.tensor(priors).clamp(0, 1)


def test_their_checkpoint_equals_a_reference_built_from_their_layer_order(tmp_path):
    from torchvision.ops import batched_nms

    from mobilenext.detection.export import DetectorGraph
    from mobilenext.detection.settings import AUTHORS_MEAN, AUTHORS_STD

    torch.manual_seed(0)
    reference = randomise_norms(_AuthorsSSDLiteMobileNeXtVOC()).eval()
    assert {k: tuple(v.shape) for k, v in reference.state_dict().items()} == _reference_shapes("mobilenext_voc0712")
    path = tmp_path / "mobilenext_ssd320_voc0712.pth"
    torch.save({"model": reference.state_dict()}, path)
    ours = restore_model(path, task="detection").model

    pixels = torch.randint(0, 256, (2, 3, 320, 320)).float()  # decoded 8-bit images, as their loader gives
    images = pixels / 255  # as our detectors take them
    # their SubtractMeans, in 0..255 units and float32
    mean, std = (torch.tensor([v * 255 for v in values]).view(1, 3, 1, 1) for values in (AUTHORS_MEAN, AUTHORS_STD))
    normalised = (pixels - mean) / std
    with torch.no_grad():
        maps, cls, reg = reference(normalised)
        for a, b in zip(maps, ours.backbone(normalised).values()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        boxes, scores = DetectorGraph(ours, 320)(images)
    # their decoding: centre offsets x 0.1 and log sizes x 0.2 of the prior, in [0, 1], then x 320
    priors = _authors_priors()
    centre = priors[:, :2] + reg[..., :2] * 0.1 * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(reg[..., 2:] * 0.2)
    expected = torch.cat([centre - size / 2, centre + size / 2], -1) * 320
    torch.testing.assert_close(boxes, expected, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(scores, cls.softmax(-1)[..., 1:], rtol=1e-4, atol=1e-5)

    # their PostProcessor: every (box, class) pair above 0.01, per-class NMS at 0.45, the 100 best, boxes not
    # clipped to the image (torchvision's SSD would clip them and keep 400 candidates per class)
    with torch.no_grad():
        found = ours(list(images))
    for image, detections in enumerate(found):
        pair_scores = cls[image].softmax(-1)[:, 1:]
        box, column = torch.where(pair_scores > 0.01)
        keep = batched_nms(expected[image][box], pair_scores[box, column], column, 0.45)[:100]
        assert ((expected[image][box][keep] < 0) | (expected[image][box][keep] > 320)).any()  # some leave the image
        torch.testing.assert_close(detections["boxes"], expected[image][box][keep], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(detections["scores"], pair_scores[box, column][keep], rtol=1e-4, atol=1e-5)
        assert torch.equal(detections["labels"], column[keep] + 1)


def test_convert_moves_a_detector_between_our_layout_and_theirs_bit_exactly(tmp_path, capsys):
    from mobilenext.cli import main
    from mobilenext.engine.checkpoint import save_checkpoint

    torch.manual_seed(2)
    model = randomise_norms(create_detector("ssdlite320_mobilenext_100"))
    ours = tmp_path / "ours.pth"
    record = {"task": "detection", "model": "ssdlite320_mobilenext_100", "classes": [f"c{i}" for i in range(20)]}
    save_checkpoint({**record, "size": 320, "boxes": "voc", "args": {}, "state_dict": model.state_dict()}, ours)
    assert main(["convert", str(ours), str(tmp_path / "theirs.pth"), "--to", "official"]) == 0
    theirs = torch.load(tmp_path / "theirs.pth", weights_only=True)["model"]
    assert {k: tuple(v.shape) for k, v in theirs.items()} == _reference_shapes("mobilenext_voc0712")
    assert main(["convert", str(tmp_path / "theirs.pth"), str(tmp_path / "back.pth")]) == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)["state_dict"]
    original = model.state_dict()
    assert list(back) == list(original) and all(torch.equal(back[k], original[k]) for k in original)
    assert main(["convert", str(ours), str(tmp_path / "theirs.pth"), "--to", "official"]) == 2  # exists
    assert "theirs.pth exists; pass --overwrite" in capsys.readouterr().err


def test_detect_models_lists_the_authors_detectors_with_their_parameter_counts(capsys):
    import csv
    import io

    from mobilenext.cli import main

    assert main(["detect", "models", "--format", "csv"]) == 0
    rows = {(r["detector"], r["config"]): r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert len(rows) == 4
    for (name, classes, boxes), (reference, _) in AUTHORS_DETECTORS.items():
        row = rows[name, boxes]
        from_file = sum(math.prod(shape) for key, shape in _reference_shapes(reference).items() if _is_parameter(key))
        assert int(row["params"]) == int(row["authors_params"]) == from_file and int(row["outputs"]) == classes
    # their README: "4.5M params, 0.8B MAdds" for both COCO detectors (loosely rounded: their MobileNetV2 config
    # builds 4.30M, as ours, whose VOC twin matches their reference file exactly)
    for name in ("ssdlite320_mobilenext_100", "ssdlite320_mobilenetv2_100"):
        row = rows[name, "coco"]
        assert 4.25e6 <= int(row["params"]) <= 4.55e6 and 700 <= float(row["madds_m"]) <= 850
    assert float(rows["ssdlite320_mobilenext_100", "voc"]["madds_m"]) > float(
        rows["ssdlite320_mobilenetv2_100", "voc"]["madds_m"]
    )


def _is_parameter(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def test_their_voc_checkpoint_on_coco_data_is_one_sentence(tmp_path, capsys):
    import shutil

    from mobilenext.cli import main
    from test_detection_data import write_coco

    voc = create_detector("ssdlite320_mobilenetv2_100")
    torch.save({"model": to_authors_layout(voc.state_dict(), voc)}, tmp_path / "voc.pth")
    images, annotations = write_coco(tmp_path)
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    shutil.move(images, tmp_path / "coco" / "val2017")
    shutil.move(annotations, tmp_path / "coco" / "annotations" / "instances_val2017.json")
    assert main(["detect", "eval", str(tmp_path / "voc.pth"), "--data", str(tmp_path / "coco")]) == 2
    error = capsys.readouterr().err.strip()
    assert "voc.pth detects 20 classes (aeroplane, bicycle, bird, ...) but the COCO data" in error, error
    assert "has 2 (person, cat)" in error and len(error.splitlines()) == 1


def _as_if_trained(detector: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics and head weights: a fresh head scores every box alike (the focal one at its 0.01
    prior, below COCO's 0.05 threshold), and equal detections would then prove nothing."""
    randomise_norms(detector)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in detector.head.modules():
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.05)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.5)
    return detector.eval()


@pytest.mark.parametrize("spec", list(AUTHORS_DETECTORS), ids=lambda p: f"{p[0]}-{p[2]}")
def test_conversion_keeps_the_detections_of_each_of_their_configs(tmp_path, spec):
    """Each of their three detectors, in their layout, converted to ours and back: the same network, scoring,
    classes, input size, normalisation and test-time settings, so the same detections to the bit."""
    from mobilenext.api import convert, restore_model

    name, classes, boxes = spec
    torch.manual_seed(0)
    detector = _as_if_trained(
        create_detector(name, classes, boxes=boxes, loss="focal" if boxes == "coco" else "softmax")
    )
    theirs = tmp_path / "theirs.pth"
    torch.save(
        {"model": {f"module.{k}": v for k, v in to_authors_layout(detector.state_dict(), detector).items()}}, theirs
    )
    assert convert(theirs, tmp_path / "ours.pth") == name
    assert convert(tmp_path / "ours.pth", tmp_path / "back.pth", "official") == name
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert {k: tuple(v.shape) for k, v in back["model"].items()} == _reference_shapes(AUTHORS_DETECTORS[spec][0])

    original, *converted = (restore_model(tmp_path / f) for f in ("theirs.pth", "ours.pth", "back.pth"))
    images = [torch.rand(3, 240, 300), torch.rand(3, 320, 320)]
    with torch.no_grad():
        expected = original.model(images)
    assert sum(len(found["boxes"]) for found in expected) > 10
    for restored in converted:
        assert type(restored.model) is type(original.model) and restored.model.loss == original.model.loss
        for field in ("name", "classes", "data_config", "test_settings"):
            assert getattr(restored, field) == getattr(original, field), field
        with torch.no_grad():
            for got, want in zip(restored.model(images), expected, strict=True):
                for key in ("boxes", "scores", "labels"):
                    assert torch.equal(got[key], want[key]), key


def test_a_detector_their_code_cannot_load_is_not_written_in_their_layout(tmp_path):
    """Not one of their configurations (4 outputs, 160 px): refused up front, in one sentence; in our layout
    it converts, keeping what decides its numbers."""
    from mobilenext.api import convert, restore_model
    from mobilenext.engine.checkpoint import save_checkpoint
    from mobilenext.errors import CheckpointError

    torch.manual_seed(0)
    detector = _as_if_trained(create_detector("ssdlite_mobilenext_035", 4, size=160, score_thresh=0.2))
    ours = tmp_path / "ours.pth"
    save_checkpoint({"task": "detection", "model": "ssdlite_mobilenext_035", "classes": ["a", "b", "c"], "size": 160,
                     "boxes": "voc", "loss": "softmax", "args": {"score_thresh": 0.2, "normalize": "imagenet"},
                     "state_dict": detector.state_dict()}, ours)  # fmt: skip
    with pytest.raises(CheckpointError, match="none of the authors' configurations .* keep it in our layout"):
        convert(ours, tmp_path / "theirs.pth", "official")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.pth"]
    convert(ours, tmp_path / "again.pth")
    original, again = restore_model(ours), restore_model(tmp_path / "again.pth")
    assert original.test_settings["score_thresh"] == 0.2 and original.data_config["mean"][0] == pytest.approx(0.485)
    for field in ("name", "classes", "data_config", "test_settings"):
        assert getattr(again, field) == getattr(original, field), field


def test_a_conversion_that_does_not_read_back_is_not_written(tmp_path, monkeypatch):
    import mobilenext.classification.files as classification_files
    from mobilenext.api import convert
    from mobilenext.errors import CheckpointError
    from mobilenext.models.checkpoint import write_safetensors

    model = timm.create_model("mobilenext_035", num_classes=3)
    torch.save(model.state_dict(), tmp_path / "w.pth")

    def damaging(state_dict, path, metadata=None):  # a writer that loses a bit
        state_dict = dict(state_dict)
        state_dict["classifier.bias"] = state_dict["classifier.bias"] + 1
        write_safetensors(state_dict, path, metadata)

    monkeypatch.setattr(classification_files, "write_safetensors", damaging)
    with pytest.raises(CheckpointError, match="did not read back as the same model .*weights"):
        convert(tmp_path / "w.pth", tmp_path / "w.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]


@pytest.mark.parametrize("size", [(241, 333), (500, 375), (97, 130)])
def test_their_test_time_preprocessing(size):
    """`--pipeline authors`: the network sees what theirs sees, the uint8 image resized by OpenCV and then
    normalised by their mean and std in 0..255 units (torchvision's resizes normalised floats: another input)."""
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    from mobilenext.detection.settings import AUTHORS_MEAN, AUTHORS_STD

    pixels = np.random.default_rng(sum(size)).integers(0, 256, (*size, 3), dtype=np.uint8)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255  # as the detectors take images
    mean = np.array([123, 117, 104], dtype=np.float32)
    std = np.array([0.229 * 255, 0.224 * 255, 0.225 * 255], dtype=np.float32)
    theirs = torch.from_numpy((cv2.resize(pixels, (320, 320)).astype(np.float32) - mean) / std).permute(2, 0, 1)
    inputs = {}
    for pipeline in ("authors", "torchvision"):
        detector = create_detector("ssdlite_mobilenext_035", 3, size=320, pipeline=pipeline).eval()
        assert (
            tuple(detector.transform.image_mean) == AUTHORS_MEAN and tuple(detector.transform.image_std) == AUTHORS_STD
        )
        inputs[pipeline] = detector.transform([image])[0].tensors[0]
    assert float((inputs["authors"] - theirs).abs().max()) <= 1e-6
    assert float((inputs["torchvision"] - theirs).abs().max()) > 1e-3


def test_their_matching_of_priors():
    """Their assign_priors, not torchvision's SSDMatcher: IoU with 1e-5 in the union (relative coordinates), the
    best prior of each object forced onto it (a later object winning a prior two want), and first of equal IoUs."""
    from torchvision.models.detection._utils import SSDMatcher
    from torchvision.ops import box_iou

    from mobilenext.detection.model import match_priors_as_authors

    priors = torch.tensor(
        [
            [0.0, 0.0, 0.1, 0.05],  # exactly object 0
            [0.0, 0.0, 0.1, 0.1],  # object 0 covers 0.50002 of it: foreground by pixels, background with the 1e-5
            [0.5, 0.5, 0.7, 0.7],  # the best prior of objects 1 and 2 alike: the later one takes it
            [0.52, 0.5, 0.72, 0.7],  # equal IoU with objects 1 and 2 (0.818): the first
            [0.9, 0.9, 1.0, 1.0],  # nobody's
        ]
    )
    objects = torch.tensor([[0.0, 0.0, 0.1, 0.050002], [0.51, 0.5, 0.71, 0.7], [0.49, 0.5, 0.69, 0.7]])
    assert match_priors_as_authors(objects, priors).tolist() == [0, -1, 2, 1, -1]
    torchvision = SSDMatcher(0.5)(box_iou(objects * 320, priors * 320)).tolist()
    assert torchvision[1] == 0  # what torchvision's rule would have trained on: a foreground prior


def test_the_authors_pipeline_trains_with_their_matching():
    """In training the detector's losses are computed on their matching: equal to the losses on the priors
    :func:`match_priors_as_authors` assigns."""
    from mobilenext.detection.model import match_priors_as_authors

    torch.manual_seed(0)
    detector = create_detector("ssdlite_mobilenext_035", 3, size=320, pipeline="authors").train()
    assert detector.authors_matching
    images = [torch.rand(3, 320, 320), torch.rand(3, 320, 320)]
    boxes = torch.tensor([[0.0, 0.0, 45.0, 22.5007], [100.0, 80.0, 220.0, 260.0]])
    targets = [{"boxes": boxes, "labels": torch.tensor([1, 2])}, {"boxes": boxes[1:], "labels": torch.tensor([1])}]
    torch.manual_seed(1)
    losses = detector(images, targets)
    with torch.no_grad():
        batch, prepared = detector.transform(images, [dict(t) for t in targets])
        maps = list(detector.backbone(batch.tensors).values())
        anchors = detector.anchor_generator(batch, maps)
        priors = detector.anchor_generator.relative_priors
        matched = [match_priors_as_authors(target["boxes"] / 320, priors) for target in prepared]
        torch.manual_seed(1)
        expected = detector.losses(prepared, detector.head(maps), anchors, matched)
    for key in expected:
        torch.testing.assert_close(losses[key].detach(), expected[key])


def test_without_opencv_the_authors_pipeline_stops_before_any_work(tmp_path, monkeypatch, capsys):
    from mobilenext.cli import main

    detector = create_detector("ssdlite320_mobilenetv2_100", pipeline="authors")
    torch.save({"model": to_authors_layout(detector.state_dict(), detector)}, tmp_path / "theirs.pth")
    (tmp_path / "photo.png").write_bytes(b"")  # never read: the check comes first
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    argv = ["detect", "predict", str(tmp_path / "photo.png"), "--checkpoint", str(tmp_path / "theirs.pth")]
    assert main([*argv, "-o", str(tmp_path / "drawn")]) == 2
    error = capsys.readouterr().err.strip()
    assert "pip install 'mobilenext[detection]'" in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "drawn").exists()
