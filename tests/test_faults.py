"""A full disk or a read-only folder, at each file write of every command that writes: exit status 2, one sentence
naming the file, the folder and the cause, no temp file left, and every file written before byte for byte intact.

The faults are real: the output folder is a small tmpfs, and right before the command creates its k-th file there
the test fills the file system (a real ENOSPC, met by the writer itself: torch.save, safetensors, the ONNX, LiteRT
and ExecuTorch writers, matplotlib, PIL, text) or makes the file's creation fail as a read-only file system fails it
(EROFS: the first thing a read-only folder refuses is the new file; a real read-only mount, which cannot be made
while the run's log is open, is the last test). Mounting needs root, which these machines and CI have; elsewhere
the module is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from helpers import make_cifar10, make_image_folder
from mobilenext.cli import main

CAUSES = {"ENOSPC": "no space left on the device holding", "EROFS": "is on a read-only file system"}


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "64m"):
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); fault injection needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class Fault:
    """Counts the files the command creates in ``mount`` (through the one write path's temp file); before the
    ``at``-th, snapshots the folder and makes the fault happen."""

    FILLER = "filler"

    def __init__(self, mount: Path, kind: str | None = None, at: int = 0) -> None:
        self.mount, self.kind, self.at, self.calls = mount, kind, at, 0
        self.before: dict[str, bytes] | None = None
        self._real = tempfile.mkstemp

    def __call__(self, *args, **kwargs):
        folder = Path(kwargs.get("dir") or (args[2] if len(args) > 2 else ""))
        if folder and str(folder.resolve()).startswith(str(self.mount.resolve())):
            self.calls += 1
            if self.calls == self.at:
                self.before = _snapshot(self.mount)
                self._inject()
        return self._real(*args, **kwargs)

    def _inject(self) -> None:
        if self.kind == "EROFS":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.mount))
        for chunk in (1 << 20, 4096):  # until the device is full, to the last page
            with contextlib.suppress(OSError), open(self.mount / self.FILLER, "ab") as f:
                while True:
                    f.write(b"\0" * chunk)
                    f.flush()


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip()


def _writes(argv, mount, monkeypatch, capsys) -> int:
    """How many files the command writes into ``mount`` when nothing goes wrong."""
    counter = Fault(mount)
    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", counter)
        code, err = _run(argv, capsys)
    assert code == 0, err
    return counter.calls


def _check_each_write(case: str, make_argv, tmp_path, monkeypatch, capsys, expected_writes: int | None = None):
    with tmpfs(tmp_path / "count") as mount:
        writes = _writes(make_argv(mount), mount, monkeypatch, capsys)
    assert writes >= 1 and (expected_writes is None or writes == expected_writes), writes
    for kind in ("ENOSPC", "EROFS"):
        for at in range(1, writes + 1):
            with tmpfs(tmp_path / f"{kind}-{at}") as mount:
                fault = Fault(mount, kind, at)
                with monkeypatch.context() as patch:
                    patch.setattr(tempfile, "mkstemp", fault)
                    code, err = _run(make_argv(mount), capsys)
                where = f"{case}: {kind} at write {at} of {writes}"
                assert code == 2, f"{where}: exit {code}: {err}"
                errors = [line for line in err.splitlines() if ": error: " in line]  # notes may come before
                assert len(errors) == 1 and CAUSES[kind] in errors[0] and str(mount) in errors[0], f"{where}: {err}"
                after = _snapshot(mount)
                after.pop(Fault.FILLER, None)
                assert not [name for name in after if ".tmp" in name], f"{where}: temp files {list(after)}"
                for name, content in fault.before.items():
                    if name == Fault.FILLER or name.endswith(".lock"):  # the run's lock goes when it ends
                        continue
                    if name.endswith("log.txt"):  # appended to, never rewritten
                        assert after[name].startswith(content), where
                    else:
                        assert after.get(name) == content, f"{where}: {name} changed"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"), per_class=4, size=24)


def test_train(images, tmp_path, monkeypatch, capsys):
    argv = ["train", "--data", str(images), "--model", "mobilenext_035", "--img-size", "32", "-b", "4", "--epochs", "1",
            "--warmup-epochs", "0", "-j", "0"]  # fmt: skip
    # args.yaml, last.pth, best.pth, summary.csv
    _check_each_write("train", lambda m: [*argv, "--output", str(m / "run")], tmp_path, monkeypatch, capsys, 4)


def test_detect_train(tmp_path, monkeypatch, capsys):
    from mobilenext.detection.shapes import write_shapes_voc

    root = write_shapes_voc(tmp_path / "shapes", train_images=8, test_images=2, classes=["square"])
    argv = ["detect", "train", "--model", "ssdlite_mobilenext_035", "--size", "96", "--classes", "square", "--data",
            str(root), "--train-sets", "2007/trainval", "-b", "4", "--iterations", "2", "--eval-interval", "2",
            "--pipeline", "torchvision", "-j", "0"]  # fmt: skip
    _check_each_write("detect train", lambda m: [*argv, "--output", str(m / "run")], tmp_path, monkeypatch, capsys, 4)


def test_nas_search(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    data = make_cifar10(tmp_path / "cifar", per_batch=8)
    argv = ["nas", "search", "--data", str(data.parent), "--epochs", "1", "-b", "8", "--init-channels", "4",
            "--layers", "3", "--nodes", "2", "--no-unrolled", "--no-channels-last", "-j", "0"]  # fmt: skip
    # args.yaml, last.pth, summary.csv, genotypes.txt, genotype.json, genotype.png, alphas.png
    _check_each_write("nas search", lambda m: [*argv, "--output", str(m / "run")], tmp_path, monkeypatch, capsys, 7)


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "pte"])
def test_export(fmt, tmp_path, monkeypatch, capsys):
    modules = {"onnx": "onnxruntime", "tflite": "ai_edge_litert", "pte": "executorch"}
    pytest.importorskip(modules[fmt])
    argv = ["export", "--model", "mobilenext_035", "--num-classes", "10", "--img-size", "32", "--format", fmt,
            "--verify-images", "2"]  # fmt: skip
    _check_each_write(f"export {fmt}", lambda m: [*argv, "-o", str(m / f"m.{fmt}")], tmp_path, monkeypatch, capsys, 1)


def test_convert(tmp_path, monkeypatch, capsys):
    import timm

    source = tmp_path / "weights.pth"
    torch.save(timm.create_model("mobilenext_035").state_dict(), source)
    argv = ["convert", str(source)]
    _check_each_write("convert", lambda m: [*argv, str(m / "w.safetensors")], tmp_path, monkeypatch, capsys, 1)


def test_plot(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from mobilenext.classification.train import AUTHORS_COLUMNS
    from mobilenext.engine.records import write_summary

    (tmp_path / "run").mkdir()
    rows = [dict(zip(AUTHORS_COLUMNS, (e, 2.0 - e / 10, 1.5 - e / 10, 50 + e, 80 + e))) for e in range(3)]
    write_summary(tmp_path / "run" / "summary.csv", rows, AUTHORS_COLUMNS)
    argv = ["plot", str(tmp_path / "run")]
    _check_each_write("plot", lambda m: [*argv, "-o", str(m / "curves.png")], tmp_path, monkeypatch, capsys, 1)


def test_benchmark(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    argv = ["benchmark", "--runtimes", "eager", "--models", "mobilenext_035", "--baseline", "mobilenext_035",
            "--img-size", "32", "--rounds", "2", "--batch-rounds", "1", "-b", "2"]  # fmt: skip
    # benchmark.csv, benchmark.md, benchmark.png
    _check_each_write("benchmark", lambda m: [*argv, "-o", str(m / "bench")], tmp_path, monkeypatch, capsys, 3)


def test_detect_predict(tmp_path, monkeypatch, capsys):
    from mobilenext.detection.model import create_detector
    from mobilenext.detection.shapes import write_shapes_voc
    from mobilenext.engine.checkpoint import save_checkpoint

    root = write_shapes_voc(tmp_path / "shapes", train_images=2, test_images=0)
    images = sorted((root / "VOCdevkit" / "VOC2007" / "JPEGImages").glob("*.jpg"))
    detector = create_detector("ssdlite_mobilenext_035", 2, size=96)
    checkpoint = tmp_path / "det.pth"
    save_checkpoint({"task": "detection", "model": "ssdlite_mobilenext_035", "classes": ["square"], "size": 96,
                     "args": {}, "state_dict": detector.state_dict()}, checkpoint)  # fmt: skip
    argv = ["detect", "predict", *map(str, images), "--checkpoint", str(checkpoint), "--score-thresh", "0"]
    _check_each_write("detect predict", lambda m: [*argv, "-o", str(m / "drawn")], tmp_path, monkeypatch, capsys, 2)


def test_an_unwritable_run_folder_is_one_sentence(tmp_path, capsys):
    """Before anything is written: the folder itself cannot be made."""
    with tmpfs(tmp_path / "ro") as mount:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        code, err = _run(["train", "--epochs", "1", "--output", str(mount / "run")], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "read-only" in err.lower(), err
    assert os.strerror(errno.EROFS).lower() in err.lower() or "read-only file system" in err
