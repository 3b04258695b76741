"""A run interrupted at any step and resumed ends with the weights of an uninterrupted run, bit for bit, with the
default number of loader workers: detection (mid-epoch, mid-round), NAS's training and search. (Classification's
own, killed by SIGKILL in a subprocess, is in test_train.py.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from helpers import make_cifar10


def assert_same_tensors(a, b, where: str = "checkpoint") -> int:
    """Every tensor of two checkpoints (nested dicts and lists) equal, bit for bit; returns how many."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
        return 1
    if isinstance(a, dict):
        tensors = [assert_same_tensors(a[k], b[k], f"{where}[{k!r}]") for k in a if k in b]
        return sum(tensors)
    if isinstance(a, (list, tuple)):
        return sum(assert_same_tensors(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    return 0


def interrupted_at(monkeypatch, task_type, step: int) -> None:
    """Stop the run as Ctrl-C or SIGTERM would, right after optimiser step ``step`` (counted from 1)."""
    original, count = task_type.after_step, itertools.count(1)

    def after_step(self):
        original(self)
        if next(count) == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(task_type, "after_step", after_step)


def _compare_runs(tmp_path: Path, monkeypatch, task_type, run, steps: tuple[int, ...]) -> None:
    """``run(output, resume)`` uninterrupted, then interrupted after each of ``steps`` and resumed: the same."""
    run(tmp_path / "straight", None)
    straight = torch.load(tmp_path / "straight" / "last.pth", weights_only=True)
    for step in steps:
        output = tmp_path / f"cut-at-{step}"
        with monkeypatch.context() as patch:
            interrupted_at(patch, task_type, step)
            with pytest.raises(KeyboardInterrupt):
                run(output, None)
        run(output, "auto")
        resumed = torch.load(output / "last.pth", weights_only=True)
        assert "resumed" in (output / "log.txt").read_text()
        assert assert_same_tensors(straight, resumed) > 100


def test_detection_resumes_mid_epoch_exactly_with_workers(tmp_path, monkeypatch):
    from mobilenext.detection.engine import DetectionTask, parse_detect_args, train_detector
    from mobilenext.detection.shapes import SHAPES_CLASSES, write_shapes_voc

    root = write_shapes_voc(tmp_path / "data", train_images=16, test_images=4)
    common = ["--model", "ssdlite_mobilenext_035", "--size", "96", "--classes", *SHAPES_CLASSES, "--data", str(root),
              "--train-sets", "2007/trainval", "-b", "4", "--iterations", "12", "--eval-interval", "4",
              "--lr-steps", "100", "--warmup-iterations", "2", "-j", "2"]  # fmt: skip

    def run(output: Path, resume: str | None) -> None:
        train_detector(parse_detect_args([*common, "--output", str(output), *(["--resume", resume] if resume else [])]))

    # 4 iterations an epoch and a round: killed at 6 and 11, resumed from 4 and 8, each mid-epoch
    _compare_runs(tmp_path, monkeypatch, DetectionTask, run, steps=(6, 11))


def test_nas_training_resumes_exactly_with_default_workers(tmp_path, monkeypatch):
    from mobilenext.engine.config import config_from_args
    from mobilenext.nas.train import DEFAULT_RECIPE, NasTrainConfig, NasTrainTask, train_network

    data = make_cifar10(tmp_path / "cifar")
    common = {"config": DEFAULT_RECIPE, "data": str(data.parent), "genotype": "DARTS_V2", "epochs": 3,
              "init_channels": 4, "layers": 5, "batch_size": 16}  # fmt: skip

    def run(output: Path, resume: str | None) -> None:
        train_network(config_from_args({**common, "output": str(output), "resume": resume}, NasTrainConfig))

    # 100 images, batch 16: 6 steps an epoch; killed in epochs 1 and 2
    _compare_runs(tmp_path, monkeypatch, NasTrainTask, run, steps=(8, 15))


def test_nas_search_resumes_exactly_with_default_workers(tmp_path, monkeypatch):
    from mobilenext.engine.runner import Runner
    from mobilenext.nas.search import SearchConfig, SearchTask

    data = make_cifar10(tmp_path / "cifar")
    common = dict(data=str(data.parent), unrolled=False, epochs=3, batch_size=16, init_channels=4, layers=3, nodes=2,
                  channels_last=False)  # fmt: skip

    def run(output: Path, resume: str | None) -> None:
        Runner(SearchTask, SearchConfig(output=str(output), resume=resume, **common)).run()

    # 50 images for the weights, batch 16: 3 steps an epoch; killed in epochs 1 and 2
    _compare_runs(tmp_path, monkeypatch, SearchTask, run, steps=(4, 8))
