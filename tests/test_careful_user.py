"""A careful (and a hostile) user's paths right after the happy path: right answers from one's own checkpoint,
no file ever lost or overwritten unasked, every bad flag one sentence, clean machine-readable output.

One test (or one parametrised group) per numbered finding of the issue "Never a wrong answer, never a lost
file"; each of them failed on the code before it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import mobilenext
from conftest import QUICK
from helpers import make_cifar10, make_image_folder, run_cli
from mobilenext.api import validate
from mobilenext.classification.config import parse_train_args
from mobilenext.classification.train import train
from mobilenext.data.digits import DigitsDataset
from mobilenext.data.images import read_image
from mobilenext.engine.checkpoint import load_training_checkpoint, save_checkpoint
from mobilenext.engine.distributed import DistInfo
from mobilenext.engine.run_folder import RunFolderError, open_run
from mobilenext.errors import CheckpointError
from mobilenext.models import save_safetensors

ONE_PROCESS = DistInfo(0, 0, 1, torch.device("cpu"))


def _console(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mobilenext", *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 1. predict and inference_model use the checkpoint's model, transform and class names -------------------
@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory) -> Path:
    """The 359 held-out digits as PNG files, ``val/<digit>/<n>.png``: the same pixels the embedded split holds."""
    root = tmp_path_factory.mktemp("digits_png")
    held_out = DigitsDataset("val")
    for index, (image, label) in enumerate(held_out):
        folder = root / "val" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:03d}.png")
    return root


def test_predict_with_ones_own_checkpoint_agrees_with_validate(digits_run, digits_folder, capsys):
    checkpoint = digits_run[0] / "best.pth"
    expected = validate(checkpoint, data=str(digits_folder))
    assert expected["images"] == 359 and expected["top1"] == pytest.approx(validate(checkpoint)["top1"], abs=1e-9)

    # No --model: the checkpoint names it. CSV: the class names are the digits' folder names.
    code, out, err = run_cli(
        ["predict", str(digits_folder / "val"), "--checkpoint", str(checkpoint), "--format", "csv", "--topk", "2"],
        capsys,
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    firsts = [r for r in rows if r["rank"] == "1"]
    assert len(firsts) == 359 and len(rows) == 2 * 359
    correct = sum(r["class"] == Path(r["image"]).parent.name for r in firsts)
    assert 100 * correct / 359 == pytest.approx(expected["top1"], abs=1e-9)
    assert expected["top1"] > 50  # a trained model, so agreement is not agreement on noise
    assert "mobilenext_035" in err and "32x32 px" in err and "checkpoint's training run" in err

    # The Python API, from the checkpoint file or from get_model, gives the same answer as the CLI.
    image = sorted((digits_folder / "val").rglob("*.png"))[0]
    first = next(r for r in firsts if Path(r["image"]) == image)
    from_file = mobilenext.inference_model(checkpoint, image)
    model = mobilenext.get_model("mobilenext_035", pretrained=checkpoint)
    assert model.pretrained_cfg["input_size"] == (3, 32, 32) and model.pretrained_cfg["label_names"][3] == "3"
    from_model = mobilenext.inference_model(model, image)
    assert from_file["pred_class"] == from_model["pred_class"] == first["class"]
    assert from_file["pred_score"] == pytest.approx(float(first["score"]), abs=1e-5)


def test_validate_scores_by_the_runs_classes_not_the_folders_order(digits_run, digits_folder, tmp_path, capsys):
    """validate maps class folders to the checkpoint's class names: a missing folder is a reported subset (the
    same top-1 as predict on those images), a folder the run never saw is one sentence, never a shifted index."""
    import shutil

    checkpoint = digits_run[0] / "best.pth"
    subset = tmp_path / "subset"
    shutil.copytree(digits_folder / "val", subset / "val")
    shutil.rmtree(subset / "val" / "0")  # the folders after it would each have shifted by one
    result = validate(checkpoint, data=str(subset))
    assert result["missing_classes"] == ["0"] and result["classes"] == 9
    code, out, _ = run_cli(["predict", str(subset / "val"), "--checkpoint", str(checkpoint), "--format", "csv",
                             "--topk", "1"], capsys)  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    correct = sum(r["class"] == Path(r["image"]).parent.name for r in rows)
    assert result["images"] == len(rows) and result["top1"] == pytest.approx(100 * correct / len(rows), abs=1e-9)

    for change in ("renamed", "added"):
        other = tmp_path / change
        shutil.copytree(digits_folder / "val", other / "val")
        if change == "renamed":
            (other / "val" / "3").rename(other / "val" / "aaa_dog")
        else:
            shutil.copytree(other / "val" / "3", other / "val" / "10")
        code, out, err = run_cli(["validate", str(checkpoint), "--data", str(other), "--json"], capsys)
        assert code == 2 and out == "", err
        error = err.strip()
        assert "that mobilenext_035 was not trained on (its 10 classes: 0, 1, 2" in error, error
        assert len(error.splitlines()) == 1


def test_predict_json_is_one_document(digits_run, digits_folder, capsys):
    images = sorted((digits_folder / "val" / "7").glob("*.png"))[:3]
    (digits_folder / "broken.png").write_bytes(b"not a png")
    code, out, err = run_cli(
        [
            "predict",
            *map(str, images),
            str(digits_folder / "broken.png"),
            "--checkpoint",
            str(digits_run[0] / "best.pth"),
            "--json",
        ],
        capsys,
    )
    assert code == 1  # one image skipped
    document = json.loads(out)
    assert document["model"] == "mobilenext_035" and len(document["predictions"]) == 3
    assert [p["image"] for p in document["predictions"]] == list(map(str, images))
    assert len(document["predictions"][0]["topk"]) == 5 and document["skipped"][0]["image"].endswith("broken.png")
    assert "not a readable image" in err


# --- 2. a run folder is never overwritten, never shared, never reused by name ----------------------------------
def test_train_into_a_finished_run_is_refused_and_changes_nothing(digits_run, capsys):
    run = digits_run[0]
    before = _snapshot(run)
    code, _, err = run_cli(["train", *QUICK, "--epochs", "1", "--output", str(run)], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and "already holds a run" in err and "--resume auto" in err
    assert _snapshot(run) == before


def test_a_second_writer_of_a_run_folder_is_refused(tmp_path):
    with open_run(str(tmp_path / "run"), None, "m", ONE_PROCESS) as folder:
        assert folder == tmp_path / "run"
        with pytest.raises(RunFolderError, match=rf"in use by another run \(process {os.getpid()}\)"):
            train(parse_train_args([*QUICK, "--epochs", "1", "--output", str(folder), "--resume", "auto"]))
        (folder / "log.txt").write_text("the first run's log\n")  # a new run is told of the writer, not its files
        with pytest.raises(RunFolderError, match=rf"in use by another run \(process {os.getpid()}\)"):
            train(parse_train_args([*QUICK, "--epochs", "1", "--output", str(folder)]))
    assert not (tmp_path / "run" / "last.pth").exists()


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr("time.strftime", lambda fmt, *a: "20260101-120000")
    with (
        open_run(None, None, "m", ONE_PROCESS, runs_root=tmp_path) as a,
        open_run(None, None, "m", ONE_PROCESS, runs_root=tmp_path) as b,
    ):
        assert a != b and {a.name, b.name} == {"m-20260101-120000", "m-20260101-120000-2"}


def test_log_records_why_a_run_stopped_and_that_it_resumed(tmp_path):
    run = tmp_path / "run"
    diverging = [
        *QUICK,
        "--epochs",
        "2",
        "--warmup-epochs",
        "1",
        "--warmup-lr",
        "0.01",
        "--lr",
        "1e30",
        "--log-interval",
        "5",
        "--output",
        str(run),
    ]
    with pytest.raises(mobilenext.MobileNeXtError, match="NaN/inf"):
        train(parse_train_args(diverging))
    with pytest.raises(mobilenext.MobileNeXtError, match="NaN/inf"):  # resumed at epoch 1, diverges again
        train(parse_train_args([*diverging, "--resume", "auto"]))
    log = (run / "log.txt").read_text()
    assert log.count("started in") == 2 and "(resuming)" in log
    assert "resumed" in log and "epoch 1" in log
    assert log.count("stopped: the training loss became NaN/inf") == 2


# --- 3. detect predict never draws over its inputs, and names clashing outputs apart --------------------------
@pytest.fixture(scope="module")
def detector_checkpoint(tmp_path_factory) -> Path:
    """An untrained SSDLite (random weights) saved as `detect train` saves it: enough to draw boxes."""
    from mobilenext.detection.model import create_detector

    torch.manual_seed(0)
    model = create_detector("ssdlite320_mobilenext_100", num_classes=2, size=320)
    path = tmp_path_factory.mktemp("detector") / "det.pth"
    save_checkpoint(
        {
            "task": "detection",
            "model": "ssdlite320_mobilenext_100",
            "classes": ["square"],
            "size": 320,
            "args": {},
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path


def _photo(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


def test_detect_predict_keeps_inputs_and_mirrors_clashing_names(tmp_path, detector_checkpoint, capsys):
    photos = tmp_path / "photos"
    inputs = [_photo(photos / "a" / "x.jpg", 0), _photo(photos / "b" / "x.jpg", 1), _photo(photos / "a" / "x.png", 2)]
    before = _snapshot(photos)
    common = ["--checkpoint", str(detector_checkpoint), "--score-thresh", "0.0"]

    # Drawing a/x.png into its own folder would replace it: refused before any work.
    code, _, err = run_cli(["detect", "predict", str(inputs[2]), "-o", str(photos / "a"), *common], capsys)
    assert code == 2 and "would replace the input image" in err and _snapshot(photos) == before

    out = tmp_path / "drawn"
    assert run_cli(["detect", "predict", str(photos), "-o", str(out), *common], capsys)[0] == 0
    drawn = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert drawn == ["a/x.jpg.png", "a/x.png.png", "b/x.png"]
    assert all(Image.open(out / name).size == (80, 60) for name in drawn)
    assert _snapshot(photos) == before

    drawn_before = _snapshot(out)
    code, _, err = run_cli(["detect", "predict", str(photos), "-o", str(out), *common], capsys)
    assert code == 2 and "--overwrite" in err and _snapshot(out) == drawn_before
    assert run_cli(["detect", "predict", str(photos), "-o", str(out), "--overwrite", *common], capsys)[0] == 0


# --- 4. every command that writes a file refuses to replace one unasked ----------------------------------------
def test_export_convert_and_detect_export_keep_existing_files(tmp_path, detector_checkpoint, capsys):
    weights = tmp_path / "w.safetensors"
    save_safetensors(timm.create_model("mobilenext_035", num_classes=10).state_dict(), weights)
    cases = [
        (
            tmp_path / "m.pt2",
            [
                "export",
                "--model",
                "mobilenext_035",
                "--checkpoint",
                str(weights),
                "--format",
                "pt2",
                "--verify-images",
                "4",
                "--img-size",
                "32",
            ],
        ),
        (tmp_path / "c.safetensors", ["convert", str(weights)]),
        (tmp_path / "d.onnx", ["detect", "export", str(detector_checkpoint)]),
    ]
    for target, argv in cases:
        target.write_bytes(b"the user's file")
        argv = [*argv, str(target)] if argv[0] == "convert" else [*argv, "-o", str(target)]
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and "exists; pass --overwrite" in err, (argv, err)
        assert target.read_bytes() == b"the user's file"
    code, _, err = run_cli([*cases[1][1], str(cases[1][0]), "--overwrite"], capsys)
    assert code == 0 and cases[1][0].read_bytes() != b"the user's file"
    # An ONNX graph is not written under another format's name.
    code, _, err = run_cli(["detect", "export", str(detector_checkpoint), "-o", str(tmp_path / "d.tflite")], capsys)
    assert code == 2 and "d.tflite should end in .onnx" in err and not (tmp_path / "d.tflite").exists()


def test_nas_search_into_an_existing_run_is_refused(tmp_path, capsys):
    data = make_cifar10(tmp_path / "cifar", per_batch=8)
    run = tmp_path / "search"
    run.mkdir()
    (run / "args.yaml").write_text("epochs: 50\n")
    code, _, err = run_cli(
        [
            "nas",
            "search",
            "--data",
            str(data),
            "--output",
            str(run),
            "--init-channels",
            "4",
            "--layers",
            "3",
            "-b",
            "4",
            "-j",
            "0",
        ],
        capsys,
    )
    assert code == 2 and "already holds a run" in err
    assert _snapshot(run) == {"args.yaml": b"epochs: 50\n"}


# --- 5. one huge image is skipped like a broken one; 16-bit and float images keep their brightness ---------------
def test_predict_skips_an_oversized_image_and_keeps_the_others(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, size in (("a.png", 40), ("huge.png", 700), ("c.png", 40)):
        Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(folder / name)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300)  # as if huge.png had 5x PIL's real limit
    code, out, err = run_cli(
        ["predict", str(folder), "--model", "mobilenext_035", "--format", "csv", "--topk", "1"], capsys
    )
    assert code == 1
    assert [Path(r["image"]).name for r in csv.DictReader(io.StringIO(out))] == ["a.png", "c.png"]
    assert "huge.png is too large" in err and "90,000" in err


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(grey16)
    floats = tmp_path / "float.tif"
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(floats)
    for path in (grey16, floats):
        assert abs(int(np.asarray(read_image(path))[0, 0, 0]) - 128) <= 1


# --- 6. --json and --format csv: stdout holds exactly that ----------------------------------------------------
def test_validate_json_without_a_checkpoint_is_pure_json(tmp_path):
    result = _console("validate", "--model", "mobilenext_035", "--json", "-b", "128", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 359
    assert "random weights" in result.stderr


def test_benchmark_csv_is_pure_csv_even_when_saving(tmp_path, capsys):
    argv = [
        "benchmark",
        "--runtimes",
        "eager",
        "--models",
        "mobilenext_035",
        "--baseline",
        "mobilenext_035",
        "--img-size",
        "32",
        "--rounds",
        "2",
        "--batch-rounds",
        "1",
        "-b",
        "2",
        "--format",
        "csv",
        "-o",
        str(tmp_path / "bench"),
    ]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["model"] == "mobilenext_035" and float(rows[0]["p50_ms"]) > 0
    assert "wrote" in err and (tmp_path / "bench" / "benchmark.csv").is_file()
    code, out, err = run_cli(argv, capsys)  # the saved files are not replaced unasked, before any timing
    assert code == 2 and out == "" and "--overwrite" in err


# --- 7. export without a checkpoint: the model's resolution, a check that means something; NAS networks fuse ------
def test_export_without_checkpoint_uses_the_models_resolution_and_real_logits(tmp_path, capsys):
    code, out, err = run_cli(
        [
            "export",
            "--model",
            "mobilenext_035",
            "--format",
            "pt2",
            "--verify-images",
            "4",
            "-o",
            str(tmp_path / "m.pt2"),
        ],
        capsys,
    )
    assert code == 0, err
    assert "input Nx3x224x224" in out
    logits = float(out.split("logits up to ")[1].split(")")[0])
    assert logits > 0.05  # ~1e-10 at timm's initial BatchNorm statistics
    diff = float(out.split("max |diff| ")[1].split()[0])
    assert diff < 1e-3 * logits


def test_export_a_nas_network(tmp_path):
    from mobilenext.deploy.export import calibrate_norms, export_model

    model = timm.create_model("darts_cifar", genotype="DARTS_V2", init_channels=8, layers=5, num_classes=10)

    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    calibrate_norms(model, images)
    report = export_model(model, tmp_path / "darts.pt2", verify=images)
    assert report.max_abs_logit > 0.05 and report.max_abs_diff < 1e-4 * report.max_abs_logit


# --- 8. nonsense flags: one sentence, exit 2, before any work -----------------------------------------------------
BAD_FLAGS = [
    (["train", "-b", "0"], "--batch-size: expected an integer in [1, 65536], got '0'"),
    (["train", "--epochs", "0"], "--epochs: expected an integer in [1, 1e+06]"),
    (["train", "--epochs", "-1"], "--epochs: expected an integer in [1, 1e+06]"),
    (["train", "--img-size", "0"], "--img-size: expected an integer in [1, 4096]"),
    (["train", "--lr", "nan"], "--lr: expected a number > 0, got 'nan'"),
    (["train", "--lr", "inf"], "--lr: expected a number > 0, got 'inf'"),
    (["train", "--lr", "-1"], "--lr: expected a number > 0"),
    (["train", "--drop", "1.5"], "--drop: expected a number in [0, 1)"),
    (["train", "--smoothing", "-1"], "--smoothing: expected a number in [0, 1)"),
    (["train", "--hflip", "7"], "--hflip: expected a number in [0, 1]"),
    (["train", "--model-ema-decay", "5"], "--model-ema-decay: expected a number in (0, 1)"),
    (["train", "--crop-pct", "0"], "--crop-pct: expected a number in (0, 1]"),
    (["train", "-j", "-1"], "--workers: expected an integer >= 0"),
    (["train", "--opt", "sgdd"], "unknown optimizer 'sgdd'; did you mean sgd"),
    (["train", "--sched", "cosin"], "unknown scheduler 'cosin'; did you mean cosine"),
    (["train", "--device", "banana"], "unknown device 'banana'"),
    (["train", "--interpolation", "foo"], "unknown interpolation 'foo'"),
    (["train", "--resume", "x.pth", "--pretrained", "y.pth"], "--pretrained and --resume exclude each other"),
    (["predict", "x.png", "--topk", "0"], "--topk: expected an integer >= 1"),
    (["validate", "--crop-pct", "0"], "--crop-pct: expected a number in (0, 1]"),
    (["detect", "train", "--iterations", "0"], "--iterations: expected an integer in [1, 1e+09]"),
    (["detect", "train", "--eval-interval", "0"], "--eval-interval: expected an integer >= 1"),
    (["nas", "search", "--epochs", "0"], "--epochs: expected an integer in [1, 1e+06]"),
]
if not torch.cuda.is_available():
    BAD_FLAGS.append((["train", "--device", "cuda"], "no CUDA device is available here"))


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_are_one_sentence_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert out == "" and list(tmp_path.iterdir()) == []  # no runs/ folder, no file


def test_bad_paths_are_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("a_file").write_text("x")
    Path("folder").mkdir()
    Path("latin1.yaml").write_bytes("epochs: 3  # r\xe9sum\xe9\n".encode("latin-1"))
    cases = [
        (["train", "--output", "a_file"], "--output a_file is a file"),
        (["export", "--model", "mobilenext_035", "-o", "folder"], "folder is a folder"),
        (["nas", "show", "-o", "folder"], "folder is a folder"),
        (["nas", "show", "-o", "cells.txt"], "cells.txt should end in .png"),
        (["plot", "folder", "-o", "curves.txt"], "curves.txt should end in .png"),
        (["train", "--config", "latin1.yaml"], "is not UTF-8 text"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder", "latin1.yaml"]


# --- 9. smaller: umask, no unsafe advice, paths that survive a change of directory, file kinds --------------------
def test_written_files_follow_the_umask(tmp_path):
    state_dict = {"w": torch.zeros(2)}
    old = os.umask(0o022)
    try:
        save_safetensors(state_dict, tmp_path / "shared.safetensors")  # through atomic_path, as every write
        os.umask(0o077)
        save_safetensors(state_dict, tmp_path / "private.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.safetensors").stat().st_mode) == 0o644  # was 0o600 (a temp file's)
    assert stat.S_IMODE((tmp_path / "private.safetensors").stat().st_mode) == 0o600


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_refusing_an_unsafe_checkpoint_never_advises_an_unsafe_load(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": {"w": torch.zeros(1)}, "x": _Payload()}))
    for load in (mobilenext.models.checkpoint.read_state_dict, load_training_checkpoint):
        with pytest.raises(CheckpointError) as error:
            load(path)
        assert "weights_only=False" not in str(error.value) and "for safety" in str(error.value)
    garbage = tmp_path / "notes.pth"  # refused by the same unpickler, but not for safety: it is no checkpoint
    garbage.write_text("garbage\n")  # torch's weights-only unpickler refuses it with the weights_only=False advice
    with pytest.raises(CheckpointError, match="is not a PyTorch or safetensors file") as error:
        mobilenext.models.checkpoint.read_state_dict(garbage)
    assert "weights_only" not in str(error.value)


def test_a_relative_data_folder_is_stored_absolute(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data", per_class=4)
    monkeypatch.chdir(tmp_path)
    train(parse_train_args([*QUICK, "--data", "data", "--epochs", "1", "-b", "4", "--output", "run"]))
    stored = load_training_checkpoint(tmp_path / "run" / "last.pth")["args"]["data"]
    assert stored == str(tmp_path / "data")
    monkeypatch.chdir(tmp_path / "run")  # elsewhere, the checkpoint still finds its data
    assert validate(tmp_path / "run" / "last.pth")["images"] == 8
