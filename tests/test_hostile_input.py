"""What a hostile (or careless) user meets: settings a resume may not change, flags that would exhaust the
machine, data folders with symbolic links, one-class data, file names that are not UTF-8, repeated YAML keys,
and the inference API's inputs. Each is one sentence, before any file is written, or output that names the file
exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import mobilenext
from helpers import make_image_folder, run_cli
from mobilenext._io import OutputExistsError
from mobilenext.cli import main
from mobilenext.errors import CheckpointError, ConfigError

TINY = ["--model", "mobilenext_035", "--img-size", "32", "-b", "4", "-j", "0", "--warmup-epochs", "0"]


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data", per_class=4, size=24)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- resume: what may change, what may not, and the record of both ----------------------------------------------
def test_resume_refuses_a_changed_setting_and_records_allowed_changes(folder, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", str(folder), *TINY, "--output", str(run)]
    assert run_cli([*argv, "--epochs", "2"], capsys)[0] == 0
    started = yaml.safe_load((run / "args.yaml").read_text())
    before = _files(run)
    for flag, value, was in [("--opt", "adamw", "sgd"), ("--seed", "3", "42"), ("--lr", "0.5", "it unset")]:
        code, _, err = run_cli([*argv, "--epochs", "2", "--resume", "auto", flag, value], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert f"with {flag} {value}: the run was started with {was}" in err and "--epochs" in err, err
        after = _files(run)
        assert after.pop("log.txt").startswith(before["log.txt"])  # the log tells why the run did not continue
        assert after == {k: v for k, v in before.items() if k != "log.txt"}  # nothing else written

    code, out, _ = run_cli([*argv, "--epochs", "4", "--resume", "auto", "-j", "1"], capsys)
    assert code == 0
    assert "--epochs 4 (the run was started with 2): the learning-rate schedule now ends there." in out
    text = (run / "args.yaml").read_text()
    assert yaml.safe_load(text) == started  # still the settings the run started with, one YAML mapping
    assert text.splitlines()[-1].endswith("workers: 1 (was 0), epochs: 4 (was 2)")
    rows = (run / "summary.csv").read_text().splitlines()[1:]
    assert len(rows) == 4
    # The 2-epoch cosine had reached its end (lr 0); the 4-epoch one the resume follows is above it at epoch 2
    # and ends at 0 again. (The column holds the lr set for the next epoch.)
    lr = [float(r.split(",")[5]) for r in rows]
    assert lr[1] < 1e-9 and lr[2] > 0.1 * lr[0] and lr[3] < 1e-9, lr


# --- upper bounds -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--img-size", "100000"], "--img-size: expected an integer in [1, 4096]"),
        (["train", "--epochs", "1e22"], "--epochs: expected an integer in [1, 1e+06]"),
        (["train", "-b", "1000000"], "--batch-size: expected an integer in [1, 65536]"),
        (["detect", "train", "--iterations", "1e12"], "--iterations: expected an integer in [1, 1e+09]"),
        (["detect", "train", "--size", "9000"], "--size: expected an integer in [1, 4096]"),
    ],
)
def test_flags_that_would_exhaust_the_machine_are_bounded(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_batch_that_cannot_fit_is_refused_with_the_estimate(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("mobilenext.engine.memory.available_bytes", lambda device: 2**30)  # 1 GiB free
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", str(folder), *TINY, "--img-size", "1024", "--output", str(run)], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "a batch of 4 images of 1024x1024 px needs at least" in err and "1.0 GiB free on cpu" in err, err
    assert "lower --batch-size or --img-size" in err and not run.exists()


def test_the_activation_estimate_grows_with_the_image_area():
    from mobilenext.engine.memory import activation_elements

    model = mobilenext.get_model("mobilenext_035")
    small, large = activation_elements(model, (3, 64, 64)), activation_elements(model, (3, 128, 128))
    assert 3.8 < large / small < 4.01  # the classifier's few outputs do not scale


# --- data folders -------------------------------------------------------------------------------------------------
def test_a_symlink_loop_is_one_sentence(folder, tmp_path, capsys):
    (folder / "train" / "ant" / "loop").symlink_to("..")
    code, _, err = run_cli(["train", "--data", str(folder), *TINY, "--output", str(tmp_path / "run")], capsys)
    assert code == 2 and "reached through a symbolic link" in err and "remove the link" in err, err
    assert not (tmp_path / "run").exists()


def test_held_out_images_linked_from_the_training_split_are_refused(folder, tmp_path, capsys):
    leaked = next((folder / "train" / "bee").iterdir())
    (folder / "val" / "bee" / "leak.png").symlink_to(leaked)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", str(folder), *TINY, "--output", str(run)], capsys)
    assert code == 2 and "1 image(s) of" in err and "must not hold training images" in err, err
    (folder / "val" / "bee" / "leak.png").unlink()
    assert run_cli(["train", "--data", str(folder), *TINY, "--epochs", "1", "--output", str(run)], capsys)[0] == 0
    (folder / "val" / "bee" / "leak.png").symlink_to(leaked)
    code, _, err = run_cli(["validate", str(run / "last.pth"), "--data", str(folder)], capsys)  # only val/ is read
    assert code == 2 and "must not hold training images" in err, err


def test_a_one_class_dataset_is_one_sentence(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", classes=("cat",), per_class=4, size=24)
    code, _, err = run_cli(["train", "--data", str(data), *TINY, "--output", str(tmp_path / "run")], capsys)
    assert code == 2 and "has one class (cat)" in err and "at least two classes" in err, err


def test_names_that_are_not_utf8_are_written_as_their_bytes(tmp_path, capfdbinary):
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1: not UTF-8
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(tmp_path / name)
    for fmt in ("csv", "text"):
        code = main(["predict", str(tmp_path), "--model", "mobilenext_035", "--num-classes", "3", "--format", fmt])
        out = capfdbinary.readouterr().out
        assert code == 0 and os.fsencode(str(tmp_path / name)) in out, out
    assert main(["predict", str(tmp_path), "--model", "mobilenext_035", "--num-classes", "3", "--format", "json"]) == 0
    document = json.loads(capfdbinary.readouterr().out)
    assert os.fsencode(document["predictions"][0]["image"]) == os.fsencode(str(tmp_path / name))


# --- YAML and the inference API -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: 0.1\nepochs: 2\nlr: 0.2\n", "key 'lr' given twice (line 3); keep one."),
        ("batch-size: 4\nbatch_size: 8\n", "'batch-size' and 'batch_size' are one setting; keep one."),
    ],
)
def test_a_repeated_yaml_setting_is_one_sentence(text, message, tmp_path, capsys):
    (tmp_path / "recipe.yaml").write_text(text)
    code, _, err = run_cli(["train", "--config", str(tmp_path / "recipe.yaml")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_inference_model_takes_a_list_and_names_a_missing_file():
    image = Image.fromarray(np.full((40, 40, 3), 90, np.uint8))
    model = mobilenext.get_model("mobilenext_035", num_classes=3).eval()
    one = mobilenext.inference_model(model, image)
    both = mobilenext.inference_model(model, [image, np.asarray(image)])
    assert isinstance(both, list) and len(both) == 2
    for result in both:
        assert result["pred_label"] == one["pred_label"]
        np.testing.assert_allclose(result["pred_scores"], one["pred_scores"], rtol=1e-5)
    with pytest.raises(ConfigError, match="or a non-empty list of them, not list holding other things"):
        mobilenext.inference_model(model, [image, 3])
    with pytest.raises(ConfigError, match="not int"):
        mobilenext.inference_model(model, 3)
    with pytest.raises(CheckpointError, match=r"no checkpoint file missing\.pth"):
        mobilenext.inference_model("missing.pth", image)


def test_benchmark_checks_its_baseline_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["benchmark", "--models", "mobilenext_035", "--baseline", "nosuch", "-o", "b"], capsys)
    assert code == 2 and "--baseline nosuch is not among the models timed (mobilenext_035)" in err, err
    code, _, err = run_cli(["benchmark", "--models", "mobilenext_035", "nosuch"], capsys)
    assert code == 2 and "unknown model 'nosuch'" in err, err
    assert list(tmp_path.iterdir()) == []


def test_detect_predict_plans_every_output_before_drawing(tmp_path):
    from mobilenext.data.images import find_images
    from mobilenext.detection.predict import plan_outputs

    image = tmp_path / "q.jpg"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    assert find_images([str(image), str(image)]) == [image]  # `detect predict q.jpg q.jpg`: one image, one drawing
    with pytest.raises(ConfigError, match=r"q\.jpg is given twice; pass each image once"):
        plan_outputs([image, image], tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "q.png").write_bytes(b"a user's file")
    with pytest.raises(OutputExistsError, match=r"q\.png exist"):
        plan_outputs([image], tmp_path / "out")
    assert (tmp_path / "out" / "q.png").read_bytes() == b"a user's file"


_STUCK_RUN = """
import hashlib, os, signal, sys, time
from pathlib import Path
import torch
from mobilenext.engine import run_folder
from mobilenext.engine.distributed import DistInfo

run_folder.SIGTERM_GRACE_S = 1.0
with run_folder.open_run(sys.argv[1], None, "m", DistInfo(0, 0, 1, torch.device("cpu"))):
    child = os.fork()
    if child == 0:  # like a loader worker: its own SIGTERM must not reach the parent's watchdog
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    time.sleep(2.5)
    print("survived the child's SIGTERM", flush=True)
    if sys.argv[2] == "native":
        hashlib.pbkdf2_hmac("sha256", b"x", b"y", 400_000_000)  # minutes in native code, deaf to signals
    else:
        time.sleep(60)  # Python code: the handler runs at once
    print("the call returned", flush=True)
"""


@pytest.mark.parametrize("where", ["native", "python"])
def test_sigterm_stops_a_run_anywhere(where, tmp_path):
    """Python runs signal handlers only between bytecodes: in Python code SIGTERM stops the run at once, as
    Ctrl-C does; inside a long native call the watchdog stops it after its grace period. Either way the folder is
    released (no lock file) and the log says why; a forked child's own SIGTERM is ignored."""
    script, run = tmp_path / "stuck.py", tmp_path / "run"
    script.write_text(_STUCK_RUN)
    command = [sys.executable, str(script), str(run), where]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().decode().strip() == "survived the child's SIGTERM"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - start < 30 and b"call returned" not in out, (out, err)
    log = (run / "log.txt").read_text()
    if where == "native":
        assert proc.returncode == 143 and b"terminated (SIGTERM) inside a long operation" in err, err
        assert "stopped: terminated (SIGTERM) inside a long operation" in log
    else:
        assert b"RunTerminated" in err and "stopped: terminated (SIGTERM); continue with --resume auto" in log
    assert not (run / ".lock").exists()
