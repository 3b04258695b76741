"""Checkpoints: the authors' files load, convert round-trips, and every bad file gets one clear sentence."""

from __future__ import annotations

import argparse

import pytest
import timm
import torch
from safetensors.torch import load_file

import mobilenext
from conftest import random_official_state_dict
from mobilenext import CheckpointError
from mobilenext.api import restore_model
from mobilenext.cli import main
from mobilenext.engine.checkpoint import read_training_record
from mobilenext.models import OfficialMobileNeXt, load_checkpoint, read_checkpoint, read_state_dict


def _official(width: float = 1.0, name: str = "mobilenext_100", alpha: float = 1.0) -> tuple[OfficialMobileNeXt, dict]:
    state_dict = random_official_state_dict(name)
    model = OfficialMobileNeXt(width, identity_multiplier=alpha).eval()
    model.load_state_dict(state_dict)
    return model, state_dict


def _authors_file(tmp_path, state_dict, wrap: str = "state_dict_ema", legacy: bool = False):
    """A .pth.tar shaped like the authors' releases (early-timm training checkpoint, DataParallel keys)."""
    module_keys = {f"module.{k}": v for k, v in state_dict.items()}
    if wrap == "plain":
        content = state_dict
    else:
        content = {
            "epoch": 199,
            "arch": "mobilenext",
            "args": argparse.Namespace(lr=0.1, model="i2rnetv3"),
            "state_dict": {k: torch.zeros_like(v) for k, v in module_keys.items()},
        }
        content[wrap] = module_keys
    path = tmp_path / "model_best.pth.tar"
    torch.save(content, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("wrap, legacy", [("plain", False), ("state_dict", False), ("state_dict_ema", True)])
def test_authors_checkpoint_loads_with_identical_outputs(tmp_path, wrap, legacy, image_batch):
    official, state_dict = _official()
    path = _authors_file(tmp_path, state_dict, wrap, legacy)
    ours = mobilenext.get_model("mobilenext_100", pretrained=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(image_batch), official(image_batch), rtol=0, atol=0)


def test_timm_pretrained_file_overlay_loads_authors_weights(tmp_path, image_batch):
    official, state_dict = _official(alpha=0.5)
    path = _authors_file(tmp_path, state_dict)
    ours = timm.create_model(
        "mobilenext_100", pretrained=True, identity_multiplier=0.5, pretrained_cfg_overlay=dict(file=str(path))
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(image_batch), official(image_batch), rtol=0, atol=0)


def test_convert_round_trip(tmp_path, image_batch, capsys):
    official, state_dict = _official(0.35, "mobilenext_035")
    src = _authors_file(tmp_path, state_dict)
    ours_file, back_file = tmp_path / "ours.safetensors", tmp_path / "official.safetensors"

    assert main(["convert", str(src), str(ours_file)]) == 0  # the model is recognised from the shapes
    assert "mobilenext_035" in capsys.readouterr().out
    converted = load_file(ours_file)
    assert "stem.conv.weight" in converted and not any(k.startswith("features.") for k in converted)
    model = timm.create_model("mobilenext_035", pretrained=True, pretrained_cfg_overlay=dict(file=str(ours_file)))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(image_batch), official(image_batch), rtol=0, atol=0)

    assert main(["convert", str(ours_file), str(back_file), "--to", "official"]) == 0
    back = load_file(back_file)
    assert set(back) == set(state_dict)
    for k, v in state_dict.items():
        assert torch.equal(back[k], v), k


def test_get_model_takes_the_checkpoints_number_of_classes(tmp_path):
    model = timm.create_model("mobilenext_035", num_classes=10)
    path = tmp_path / "finetuned.pth"
    torch.save(model.state_dict(), path)
    loaded = mobilenext.get_model("mobilenext_035", pretrained=path)
    assert loaded.num_classes == 10
    torch.testing.assert_close(loaded.classifier.weight, model.classifier.weight)


def test_fine_tuning_with_another_number_of_classes_keeps_a_fresh_head(tmp_path):
    model = timm.create_model("mobilenext_035")
    path = tmp_path / "imagenet.pth"
    torch.save(model.state_dict(), path)
    with pytest.warns(UserWarning, match="classifier"):
        tuned = mobilenext.get_model("mobilenext_035", pretrained=path, num_classes=3)
    assert tuned.classifier.out_features == 3
    torch.testing.assert_close(tuned.stem.conv.weight, model.stem.conv.weight)


def test_wrong_width_names_the_width_that_fits(tmp_path):
    path = _authors_file(tmp_path, random_official_state_dict("mobilenext_140"))
    with pytest.raises(CheckpointError, match="fits mobilenext_140: wrong width"):
        mobilenext.get_model("mobilenext_100", pretrained=path)


def test_wrong_number_of_classes_says_which(tmp_path):
    model = timm.create_model("mobilenext_035", num_classes=10)
    with pytest.raises(CheckpointError, match="classifier has 10 classes but the model has 1000"):
        load_checkpoint(timm.create_model("mobilenext_035"), model.state_dict())


def test_missing_and_unexpected_keys_are_named(tmp_path):
    model = timm.create_model("mobilenext_035")
    state_dict = model.state_dict()
    state_dict.pop("stem.conv.weight")
    state_dict["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"1 missing \(e\.g\. stem\.conv\.weight\); 1 unexpected \(e\.g\. extra"):
        load_checkpoint(model, state_dict)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "truncated.pth"
    torch.save(timm.create_model("mobilenext_035").state_dict(), path)
    path.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(CheckpointError, match="truncated"):
        read_state_dict(path)
    bad_safetensors = tmp_path / "bad.safetensors"
    bad_safetensors.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="truncated or not"):
        read_state_dict(bad_safetensors)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="not loaded for safety"):
        read_state_dict(path)
    assert "never run" not in capsys.readouterr().out


def test_convert_errors_leave_existing_output_untouched(tmp_path, capsys):
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"precious")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["convert", str(truncated), str(dst)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mobilenext convert: error:") and "\n" not in err
    assert dst.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors", "truncated.pth"]  # no temp files


def test_convert_into_missing_folder(tmp_path, capsys):
    src = tmp_path / "w.pth"
    torch.save(timm.create_model("mobilenext_035").state_dict(), src)
    assert main(["convert", str(src), str(tmp_path / "missing" / "w.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "tags",
    [
        {"format": "mobilenext-train-1", "args": {"model": "mobilenext_035"}},  # format 1: the model in its args
        {"format": "mobilenext-train-2", "task": "classification", "model": "mobilenext_035", "args": {}},
    ],
)
def test_training_records_of_both_formats_name_the_model(tmp_path, tags):
    model = timm.create_model("mobilenext_035", num_classes=2)
    path = tmp_path / "last.pth"
    torch.save({**tags, "classes": ["ant", "bee"], "state_dict": model.state_dict()}, path)
    assert read_training_record(read_checkpoint(path).contents).model == "mobilenext_035"
    loaded = mobilenext.get_model("mobilenext_035", pretrained=path)  # the same path as restore_model
    assert loaded.num_classes == 2 and loaded.pretrained_cfg["label_names"] == ["ant", "bee"]
    torch.testing.assert_close(loaded.classifier.weight, model.classifier.weight)


def test_search_checkpoints_are_refused_by_task_or_legacy_kind(tmp_path):
    for key in ("kind", "task"):
        path = tmp_path / f"{key}.pth"
        torch.save({"format": "mobilenext-train-1", key: "nas-search", "args": {}}, path)
        assert read_training_record(read_checkpoint(path).contents).task == "nas-search"
        with pytest.raises(CheckpointError, match="supernet, not a network to run"):
            restore_model(path, "mobilenext_035")
