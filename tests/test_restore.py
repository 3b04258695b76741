"""One way from a file to a model (``mobilenext.restore_model``): every kind of file we read restores without
``--model``, with its model, its preprocessing, its class names, the weights it says it used (EMA or not) and
its test-time settings; a file of another task is one sentence."""

from __future__ import annotations

import argparse
import json

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import random_official_state_dict
from helpers import randomise_norms
from mobilenext.api import convert, get_model, restore_model
from mobilenext.classification.files import RUN_ORIGIN
from mobilenext.cli import main
from mobilenext.detection.authors import to_authors_layout
from mobilenext.detection.data import COCO_CLASSES, VOC_CLASSES
from mobilenext.detection.model import create_detector
from mobilenext.detection.settings import AUTHORS_MEAN, AUTHORS_STD
from mobilenext.engine.checkpoint import save_checkpoint
from mobilenext.errors import CheckpointError
from mobilenext.models import OfficialMobileNeXt


def _assert_same_logits(a: torch.nn.Module, b: torch.nn.Module, size: int = 32) -> None:
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)


def _one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message.endswith(".") and "\n" not in message, message
    return message


# ---- ours: a `mobilenext train` checkpoint, and the safetensors file `mobilenext convert` makes of it ----
@pytest.fixture(scope="module")
def ours_with_ema(digits_run, tmp_path_factory):
    """conftest's digits run (MobileNeXt-0.35, 32 px, classes '0'..'9'): its best.pth with EMA weights added,
    made different from the plain ones, so that which of the two loaded shows in the outputs."""
    state = torch.load(digits_run[0] / "best.pth", weights_only=True)
    state["state_dict_ema"] = {k: v * 0.5 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    path = tmp_path_factory.mktemp("ours") / "best.pth"
    torch.save(state, path)
    return path, state


def _built(name: str, weights: dict, **kwargs) -> torch.nn.Module:
    model = timm.create_model(name, **kwargs)
    model.load_state_dict(weights)
    return model


def test_our_training_checkpoint(ours_with_ema):
    path, state = ours_with_ema
    restored = restore_model(path)  # no --model: the checkpoint names it
    assert (restored.task, restored.name, restored.source) == (
        "classification",
        "mobilenext_035",
        "a `mobilenext train` checkpoint",
    )
    assert restored.ema and restored.classes == [str(d) for d in range(10)] and restored.origin == RUN_ORIGIN
    assert restored.data_config == {**state["data_config"], "mean": list(state["data_config"]["mean"])}
    assert restored.data_config["img_size"] == 32 and restored.test_settings == {}
    assert timm.data.resolve_model_data_config(restored.model)["input_size"] == (3, 32, 32)
    _assert_same_logits(restored.model, _built("mobilenext_035", state["state_dict_ema"], num_classes=10))

    plain = restore_model(path, use_ema=False)
    assert not plain.ema
    _assert_same_logits(plain.model, _built("mobilenext_035", state["state_dict"], num_classes=10))


@pytest.mark.parametrize("layout", ["timm", "official"])
def test_converted_safetensors_keep_the_runs_record(ours_with_ema, tmp_path, layout):
    path, state = ours_with_ema
    converted = tmp_path / "digits.safetensors"
    assert convert(path, converted, layout) == "mobilenext_035"
    with safe_open(str(converted), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["architecture"] == "mobilenext_035" and metadata["weights"] == "state_dict_ema"
    assert json.loads(metadata["classes"]) == [str(d) for d in range(10)]

    original, restored = restore_model(path), restore_model(converted)
    assert restored.source == "a `mobilenext convert` safetensors file"
    for field in ("task", "name", "ema", "classes", "data_config", "origin", "args", "metrics"):
        assert getattr(restored, field) == getattr(original, field), field
    _assert_same_logits(restored.model, original.model)


def test_predict_reads_a_converted_file_without_model(ours_with_ema, tmp_path, capsys):
    """A converted file names its model in its metadata: predict needs no --model (it asked for one before)."""
    path, _ = ours_with_ema
    converted = tmp_path / "digits.safetensors"
    convert(path, converted)
    image = tmp_path / "digit.png"
    from mobilenext.data.digits import DigitsDataset

    DigitsDataset("val")[0][0].save(image)
    assert main(["predict", str(image), "--checkpoint", str(converted), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["model"] == "mobilenext_035" and document["ema"] is True
    assert "32x32 px" in document["inputs"] and "the checkpoint's training run" in document["inputs"]
    assert document["predictions"][0]["topk"][0]["class"] in [str(d) for d in range(10)]


# ---- timm's files: a train.py checkpoint, plain weights --------------------------------------------------------
def test_timm_train_checkpoint_brings_its_model_ema_and_eval_settings(tmp_path):
    torch.manual_seed(0)
    model = randomise_norms(timm.create_model("mobilenext_035", num_classes=5))
    ema = randomise_norms(timm.create_model("mobilenext_035", num_classes=5), seed=1)
    args = argparse.Namespace(model="mobilenext_035", num_classes=5, input_size=None, img_size=160, crop_pct=0.95,
                              mean=None, std=None, interpolation="bicubic", lr=0.1)  # fmt: skip
    path = tmp_path / "model_best.pth.tar"  # as timm's CheckpointSaver writes it
    torch.save(
        {"epoch": 3, "arch": "mobilenext_035", "state_dict": model.state_dict(), "state_dict_ema": ema.state_dict(),
         "optimizer": {"state": {}, "param_groups": []}, "version": 2, "args": args, "metric": 50.0},
        path,
    )  # fmt: skip
    restored = restore_model(path)
    assert (restored.name, restored.source, restored.ema) == ("mobilenext_035", "a timm train.py checkpoint", True)
    assert restored.data_config["img_size"] == 160 and restored.data_config["crop_pct"] == 0.95
    assert restored.data_config["interpolation"] == "bicubic" and restored.classes == []
    assert restored.origin == "the checkpoint's timm train.py settings"
    _assert_same_logits(restored.model, ema)

    convert(path, tmp_path / "converted.safetensors")  # keeps the model, the weights and the input settings
    again = restore_model(tmp_path / "converted.safetensors")
    assert (again.name, again.ema, again.data_config) == (restored.name, True, restored.data_config)
    _assert_same_logits(again.model, ema)


def test_plain_timm_weights_are_recognised_by_their_shapes(tmp_path):
    model = randomise_norms(timm.create_model("mobilenext_050"))
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path), metadata={"format": "pt"})  # as timm / the Hub save them
    restored = restore_model(path)
    assert (restored.name, restored.source, restored.ema) == ("mobilenext_050", "a weights file", False)
    assert restored.data_config == {}  # nothing said: the model's own (timm) settings apply
    assert len(restored.classes) == 1000 and restored.classes[0].startswith("tench")  # ImageNet's
    _assert_same_logits(restored.model, model)


# ---- the authors' classifier: a training checkpoint of their early timm, EMA weights inside -------------------
@pytest.fixture
def authors_classifier(tmp_path):
    plain, ema = random_official_state_dict("mobilenext_035"), random_official_state_dict("mobilenext_035", seed=1)
    args = argparse.Namespace(model="i2rnetv3", img_size=None, crop_pct=None, mean=None, std=None,
                              interpolation="", lr=0.1)  # fmt: skip
    path = tmp_path / "model_best.pth.tar"
    torch.save(
        {"epoch": 199, "arch": "i2rnetv3", "args": args,
         "state_dict": {f"module.{k}": v for k, v in plain.items()},
         "state_dict_ema": {f"module.{k}": v for k, v in ema.items()}},
        path,
    )  # fmt: skip
    return path, plain, ema


def _official(state_dict: dict) -> OfficialMobileNeXt:
    model = OfficialMobileNeXt(0.35)
    model.load_state_dict(state_dict)
    return model


def test_authors_classifier_restores_its_ema_weights_and_says_so(authors_classifier, capsys):
    path, plain, ema = authors_classifier
    restored = restore_model(path)
    assert (restored.name, restored.source, restored.ema) == ("mobilenext_035", "the authors' checkpoint", True)
    assert restored.data_config == {} and len(restored.classes) == 1000
    _assert_same_logits(restored.model, _official(ema))
    without = restore_model(path, use_ema=False)
    assert not without.ema
    _assert_same_logits(without.model, _official(plain))

    # validate reported the EMA weights it evaluated as the plain ones ("ema": false) before
    for flags, expected in (([], True), (["--no-ema"], False)):
        assert main(["validate", str(path), "--json", "-b", "128", "-j", "0", *flags]) == 0
        assert json.loads(capsys.readouterr().out)["ema"] is expected


# ---- detectors: the authors' VOC and COCO ones, and ours --------------------------------------------------------
@pytest.mark.parametrize(
    ("outputs", "boxes", "loss", "classes", "post_processing"),
    [(21, "voc", "softmax", VOC_CLASSES, (0.01, 0.45, 100)), (81, "coco", "focal", COCO_CLASSES, (0.05, 0.5, 100))],
    ids=["voc", "coco"],
)
def test_authors_detectors(tmp_path, outputs, boxes, loss, classes, post_processing):
    torch.manual_seed(0)
    detector = randomise_norms(create_detector("ssdlite320_mobilenext_100", outputs, boxes=boxes, loss=loss))
    path = tmp_path / f"mobilenext_ssd320_{boxes}.pth"
    torch.save({"model": {f"module.{k}": v for k, v in to_authors_layout(detector.state_dict(), detector).items()}},
               path)  # fmt: skip
    restored = restore_model(path)  # no task: the file's own
    assert (restored.task, restored.name, restored.source) == (
        "detection",
        "ssdlite320_mobilenext_100",
        "the authors' SSDLite detector",
    )
    assert restored.classes == list(classes) and not restored.ema
    assert restored.data_config == {"img_size": 320, "mean": list(AUTHORS_MEAN), "std": list(AUTHORS_STD)}
    assert tuple(restored.test_settings.values()) == post_processing
    assert restored.args["dataset"] == boxes and type(restored.model).__name__ == (
        "FocalSSD" if loss == "focal" else "SSDLite"
    )
    x = [torch.rand(3, 320, 320)]
    with torch.no_grad():
        maps = list(detector.backbone(x[0][None]).values())
        expected = detector.head(maps)
        got = restored.model.head(list(restored.model.backbone(x[0][None]).values()))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def _our_detector(tmp_path, args: dict, loss: str = "softmax"):
    torch.manual_seed(0)
    detector = create_detector("ssdlite_mobilenext_035", num_classes=3, size=96, loss=loss).eval()
    path = tmp_path / "det.pth"  # as `detect train` saves it
    save_checkpoint(
        {"task": "detection", "model": "ssdlite_mobilenext_035", "classes": ["a", "b"], "size": 96,
         "boxes": "voc", "loss": loss, "args": args, "state_dict": detector.state_dict()},
        path,
    )  # fmt: skip
    return detector, path


def test_our_detector_restores_with_its_runs_settings(tmp_path):
    detector, path = _our_detector(tmp_path, {"lr": 0.1, "score_thresh": 0.2, "nms_thresh": 0.3})
    restored = restore_model(path, task="detection")
    assert (restored.name, restored.classes, restored.data_config["img_size"]) == (
        "ssdlite_mobilenext_035",
        ["a", "b"],
        96,
    )
    assert restored.test_settings == {"score_thresh": 0.2, "nms_thresh": 0.3, "detections_per_img": 100}
    assert restored.args["lr"] == 0.1 and not restored.model.training
    images = [torch.rand(3, 96, 96)]
    detector.score_thresh, detector.nms_thresh = 0.2, 0.3
    with torch.no_grad():
        for got, want in zip(restored.model(images), detector(images), strict=True):
            for key in ("boxes", "scores", "labels"):
                torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


def test_a_focal_detector_without_thresholds_gets_cocos(tmp_path):
    """`detect train --loss focal` without a recipe: the test settings of the authors' focal (COCO) configs,
    from their one owner, not VOC's."""
    from mobilenext.detection.engine import parse_detect_args

    assert parse_detect_args(["--loss", "focal"]).with_test_settings().score_thresh == 0.05
    cfg = parse_detect_args(["--loss", "focal", "--score-thresh", "0.2"]).with_test_settings()
    assert (cfg.score_thresh, cfg.nms_thresh, cfg.detections_per_img) == (0.2, 0.5, 100)
    assert parse_detect_args([]).with_test_settings().nms_thresh == 0.45
    _, path = _our_detector(tmp_path, {"score_thresh": None, "nms_thresh": None}, loss="focal")
    assert restore_model(path).test_settings == {"score_thresh": 0.05, "nms_thresh": 0.5, "detections_per_img": 100}


def test_a_file_of_another_task_is_one_sentence(tmp_path, ours_with_ema):
    _, detector_file = _our_detector(tmp_path, {})
    with pytest.raises(CheckpointError) as error:
        restore_model(detector_file, task="classification")  # predict, validate, export
    assert "is an SSDLite detector, not a classifier; use `mobilenext detect eval`" in _one_sentence(error)
    with pytest.raises(CheckpointError) as error:
        get_model("mobilenext_035", pretrained=detector_file)
    assert "is an SSDLite detector, not a classifier" in _one_sentence(error)
    with pytest.raises(CheckpointError) as error:
        restore_model(ours_with_ema[0], task="detection")
    assert "is a classifier, not a detector; use `mobilenext predict`" in _one_sentence(error)
    assert main(["detect", "eval", str(ours_with_ema[0])]) == 2
