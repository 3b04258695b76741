"""Small real datasets the tests write: image folders with optional broken files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn


def make_image_folder(
    root: Path,
    classes=("ant", "bee"),
    per_class: int = 4,
    size: int = 20,
    corrupt: int = 0,
    truncated: int = 0,
    splits=("train", "val"),
) -> Path:
    """``root/{train,val}/<class>/*.png``: each class a distinct colour plus noise, so it is learnable.

    ``corrupt`` files are not images at all; ``truncated`` ones are PNGs cut in half. Both go to the first class.
    """
    rng = np.random.default_rng(0)
    for split in splits:
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(97 * c) % 256, (57 * c + 80) % 256, (151 * c + 40) % 256], dtype=np.int16)
            for i in range(per_class):
                noise = rng.integers(-30, 31, (size, size, 3))
                Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
        first = root / split / classes[0]
        for i in range(corrupt):
            (first / f"broken{'' if i == 0 else i}.jpg").write_bytes(b"this is not a jpeg")
        for i in range(truncated):
            whole = (first / "0.png").read_bytes()
            (first / f"truncated{'' if i == 0 else i}.png").write_bytes(whole[: len(whole) // 2])
    return root


@torch.no_grad()
def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and classifier, as after training, so a wrong fold or export cannot pass by
    accident (freshly initialised models give near-zero logits that any error would hide in)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
        elif isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5)
    return model.eval()


def make_cifar10(root: Path, per_batch: int = 20, num_classes: int = 10, drop=(), seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` in CIFAR-10's python format (5 training batches of ``per_batch`` images, a
    test batch, batches.meta), learnable: each class is a colour plus a bright bar at its own height, with
    noise. Labels beyond ``num_classes`` never occur. Files named in ``drop`` are left out."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, num_classes, per_batch)
        images = rng.integers(0, 60, (per_batch, 32, 32, 3)).astype(np.int16)
        for image, label in zip(images, labels):
            image += np.array([(97 * label) % 160, (57 * label + 80) % 160, (151 * label + 40) % 160], dtype=np.int16)
            image[3 * label : 3 * label + 3] = 255
        data = np.clip(images, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2).reshape(per_batch, 3072)
        if name not in drop:
            (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": [int(v) for v in labels]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"class{i}" for i in range(10)]}))
    return folder


def torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` (gloo on CPU), one thread per process, output captured."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``mobilenext ARGV`` in this process (argparse errors exit via SystemExit)."""
    from mobilenext.cli import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
