"""Our SSDLite is the authors' (houqb/ssdlite-pytorch-mobilenext): every key and shape of their checkpoints,
their parameter counts, and their layout converted both ways without a bit changed."""

from __future__ import annotations

import pytest
import torch

from conftest import reference_path
from helpers import randomise_norms
from mobilenext.detection.model import create_detector, from_authors_layout, to_authors_layout

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
    from mobilenext.detection.model import AUTHORS_MEAN
    from mobilenext.models.checkpoint import restore_model

    torch.manual_seed(1)
    original = randomise_norms(create_detector("ssdlite320_mobilenetv2_100")).eval()
    weights = {f"module.{k}": v for k, v in to_authors_layout(original.state_dict(), original).items()}
    path = tmp_path / "mobilenet_v2_ssd320_voc0712.pth"
    torch.save({"model": weights, "iteration": 60000}, path)

    loaded, record = restore_model(path, task="detection")
    assert record["model"] == "ssdlite320_mobilenetv2_100" and len(record["classes"]) == 20
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
        restore_model(path)  # predict/validate/export of classifiers refuse it in one sentence


def test_their_coco_checkpoint_and_wrong_files_are_one_sentence(tmp_path, capsys):
    from mobilenext.cli import main

    coco = create_detector("ssdlite320_mobilenext_100", num_classes=81, boxes="coco")
    torch.save({"model": to_authors_layout(coco.state_dict(), coco)}, tmp_path / "coco.pth")
    classifier = tmp_path / "classifier.pth"
    torch.save({"features.0.0.weight": torch.zeros(32, 3, 3, 3)}, classifier)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes((tmp_path / "coco.pth").read_bytes()[:1000])
    expected = {
        "coco.pth": "81 outputs per box and 4 boxes on the last map (their COCO detector",
        "classifier.pth": "is a classification checkpoint",
        "cut.pth": "is truncated or corrupt",
    }
    for name, message in expected.items():
        assert main(["detect", "export", str(tmp_path / name), "-o", str(tmp_path / "x.onnx")]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "x.onnx").exists()
