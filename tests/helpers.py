"""Small real datasets the tests write: image folders with optional broken files."""

from __future__ import annotations

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
