"""Training end to end on real data: the embedded digits, generated image folders, resume after SIGKILL, DDP."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import DIGITS_EPOCHS, QUICK  # QUICK: a small recipe on the digits; digits_run: the digits recipe
from helpers import make_image_folder, torchrun
from mobilenext.api import validate
from mobilenext.classification.config import TrainConfig, parse_train_args
from mobilenext.classification.train import AUTHORS_COLUMNS, train
from mobilenext.engine.checkpoint import load_training_checkpoint
from mobilenext.errors import CheckpointError, ConfigError, TrainingDiverged


def _cfg(output: Path, *extra: str) -> TrainConfig:
    return parse_train_args([*QUICK, "--output", str(output), *extra])


def _summary(run: Path) -> list[dict[str, str]]:
    with open(run / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _cli(*args: str, timeout: float = 300, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mobilenext", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **popen,
    )


def test_short_run_on_embedded_digits_learns(digits_run):
    run, result = digits_run
    rows = _summary(run)
    assert [int(r["epoch"]) for r in rows] == list(range(DIGITS_EPOCHS))
    assert list(rows[0])[:5] == list(AUTHORS_COLUMNS) and {"lr", "epoch_time"} <= set(rows[0])
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert result["best"]["metric"] > 60.0  # chance is 10%
    assert result["num_updates"] == DIGITS_EPOCHS * (1438 // 64)
    args = yaml.safe_load((run / "args.yaml").read_text())
    assert args["model"] == "mobilenext_035" and args["img_size"] == 32 and args["hflip"] == 0.0


def test_checkpoints_are_weights_only_and_complete(digits_run):
    run, result = digits_run
    state = torch.load(run / "last.pth", weights_only=True)
    assert {"state_dict", "optimizer", "scheduler", "scaler", "rng", "epoch", "num_updates", "args"} <= set(state)
    assert state["epoch"] == DIGITS_EPOCHS and state["num_updates"] == result["num_updates"]
    best = torch.load(run / "best.pth", weights_only=True)
    assert best["epoch"] - 1 == result["best"]["epoch"]
    assert not list(run.glob(".*.tmp*"))


def test_validate_reproduces_the_logged_accuracy(digits_run):
    run, result = digits_run
    logged = next(r for r in _summary(run) if int(r["epoch"]) == result["best"]["epoch"])
    measured = validate(run / "best.pth")
    assert measured["images"] == 359
    assert measured["top1"] == pytest.approx(float(logged["eval_prec1"]), abs=1e-6)
    assert measured["loss"] == pytest.approx(float(logged["eval_loss"]), rel=1e-4)
    # Test-time resolution changes what is measured.
    assert validate(run / "best.pth", img_size=16)["img_size"] == 16


def test_validate_names_a_missing_or_truncated_checkpoint(digits_run, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        validate(tmp_path / "nope.pth")
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes((digits_run[0] / "best.pth").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        validate(truncated)


def test_validate_cli_prints_accuracy(digits_run):
    run, _ = digits_run
    proc = _cli("validate", str(run / "best.pth"))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "top-1" in out and "logged when saved" in out


def test_config_file_and_flags_precedence(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: mobilenext_050\nepochs: 7\nlr-base: 0.3\nlr_base_size: 128\nmodel-ema: true\n")
    cfg = parse_train_args(["--config", str(recipe), "--epochs", "3", "-b", "32"])
    assert (cfg.model, cfg.epochs, cfg.lr_base, cfg.model_ema, cfg.batch_size) == ("mobilenext_050", 3, 0.3, True, 32)
    assert cfg.global_lr(world_size=2) == pytest.approx(0.3 * 64 / 128)  # scaled to the global batch
    assert parse_train_args(["--config", str(recipe), "--no-model-ema", "--lr", "0.01"]).global_lr(8) == 0.01
    # No --config and no --data: the packaged digits recipe; --data alone: plain defaults.
    assert parse_train_args([]).img_size == 48
    assert parse_train_args(["--data", "x"]).epochs == TrainConfig().epochs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epohcs: 3\n", "unknown key 'epohcs'; did you mean 'epochs'"),
        ("epochs: three\n", "epochs: 'three' is not valid"),
        ("scale: 0.5\n", "expected a list of 2 numbers"),
        ("model-ema: maybe\n", "expected true or false"),
        ("[1, 2\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=message):
        parse_train_args(["--config", str(recipe)])


def test_unreadable_images_are_skipped_and_finetuning_resets_the_head(tmp_path, digits_run, caplog):
    data = make_image_folder(tmp_path / "data", classes=("ant", "bee"), per_class=6, corrupt=1, truncated=1)
    run = tmp_path / "run"
    with caplog.at_level("INFO", logger="mobilenext"):
        result = train(
            _cfg(
                run,
                "--data",
                str(data),
                "--epochs",
                "2",
                "-b",
                "4",
                "--img-size",
                "32",
                "--pretrained",
                str(digits_run[0] / "best.pth"),
            )
        )
    assert "10-class classifier; it is replaced by a new 2-class one" in caplog.text
    assert "unreadable image(s)" in caplog.text and "broken.jpg" in caplog.text
    rows = _summary(run)
    assert len(rows) == 2 and all(int(r["skipped_images"]) >= 2 for r in rows)  # 2 bad in val every epoch
    assert result["model"]["images"] == 12
    assert str(run) in (run / "log.txt").read_text()
    assert str(run) not in (digits_run[0] / "log.txt").read_text()  # each run logs to its own file only


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    # Epoch 0 trains at the warm-up lr; epoch 1 jumps to an absurd lr and diverges.
    cfg = _cfg(
        run, "--epochs", "3", "--warmup-epochs", "1", "--warmup-lr", "0.01", "--lr", "1e30", "--log-interval", "5"
    )
    with pytest.raises(TrainingDiverged, match=r"NaN/inf at epoch 1.*last good checkpoint .*last.pth is kept"):
        train(cfg)
    assert load_training_checkpoint(run / "last.pth")["epoch"] == 1
    assert len(_summary(run)) == 1


def test_resume_of_another_models_checkpoint_is_refused(digits_run, tmp_path):
    cfg = parse_train_args(
        ["--model", "mobilenext_050", "--resume", str(digits_run[0] / "last.pth"), "--output", str(tmp_path / "other")]
    )
    with pytest.raises(CheckpointError, match="is a mobilenext_035 run, not mobilenext_050"):
        train(cfg)


def test_resume_of_a_weights_file_is_refused(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, weights)
    with pytest.raises(CheckpointError, match="not a mobilenext training checkpoint; .*--pretrained"):
        train(_cfg(tmp_path / "run", "--resume", str(weights)))


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 240) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return lines
        assert time.monotonic() < deadline, "".join(lines)
    raise AssertionError(f"process ended before printing {text!r}:\n{''.join(lines)}")


@pytest.mark.parametrize("kill_at", ["epoch 1 10/", "epoch 2 30/"])
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path, kill_at):
    """With the default loader workers: the same weights, optimiser state and random states, bit for bit."""
    from test_resume import assert_same_tensors

    common = [*QUICK, "--epochs", "3", "--log-interval", "10"]
    straight = _cli("train", *common, "--output", str(tmp_path / "straight"))  # same process setup as the others
    out, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, out

    run = tmp_path / "killed"
    proc = _cli("train", *common, "--output", str(run))
    _wait_for(proc, kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    epoch = int(kill_at.split()[1])
    assert load_training_checkpoint(run / "last.pth")["epoch"] == epoch  # intact after the kill
    assert [int(r["epoch"]) for r in _summary(run)] == list(range(epoch))

    resumed = _cli("train", *common, "--output", str(run), "--resume", "auto")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resumed" in out and f"epoch {epoch}, {epoch * 44} optimizer steps done" in out

    final = load_training_checkpoint(run / "last.pth")
    expected = load_training_checkpoint(tmp_path / "straight" / "last.pth")
    assert final["num_updates"] == expected["num_updates"] == 3 * 44
    assert assert_same_tensors(expected, final) > 100  # weights, momentum, RNG states
    assert [r["eval_prec1"] for r in _summary(run)] == [r["eval_prec1"] for r in _summary(tmp_path / "straight")]
    assert not list(run.glob(".*.tmp*"))


def test_two_process_ddp_on_cpu(tmp_path):
    run = tmp_path / "ddp"
    proc = torchrun(
        "-m",
        "mobilenext",
        "train",
        *QUICK,
        "-b",
        "16",
        "--epochs",
        "1",
        "--output",
        str(run),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("epoch   0/1") == 1  # rank 0 alone logs
    assert "16 x 2 process(es)" in proc.stdout
    state = load_training_checkpoint(run / "last.pth")
    assert state["num_updates"] == 1438 // (16 * 2)  # each rank takes half of every global batch
    # The metrics were summed over both ranks' shards, each measured with the BatchNorm statistics the
    # checkpoint saves: one process re-measures the same numbers (the loss to float precision).
    logged = _summary(run)[0]
    measured = validate(run / "last.pth")
    assert measured["top1"] == pytest.approx(float(logged["eval_prec1"]), abs=1e-6)
    assert measured["loss"] == pytest.approx(float(logged["eval_loss"]), rel=1e-5)
