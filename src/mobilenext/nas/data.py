"""CIFAR for architecture search and evaluation, with DARTS's augmentation: pad-4 random crop, flip, and
optionally Cutout. The search splits the training set in two: weights learn on one part, alpha on the other."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import transforms as T

from ..data.cifar import CifarDataset, find_cifar
from ..data.datasets import DATA_DEFAULTS
from ..errors import ConfigError

__all__ = ["Cutout", "cifar_transforms", "open_cifar", "split_for_search"]

CIFAR_MEAN, CIFAR_STD = DATA_DEFAULTS["cifar"]["mean"], DATA_DEFAULTS["cifar"]["std"]


class Cutout:
    """Zero a ``length`` x ``length`` square at a uniformly random centre of the normalised image; near the
    border the square is clipped (DeVries & Taylor 2017, as DARTS applies it)."""

    def __init__(self, length: int):
        self.length = length

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        y, x = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        image = image.clone()
        image[..., max(0, y - half) : y + half, max(0, x - half) : x + half] = 0.0
        return image

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


def cifar_transforms(training: bool, cutout: int = 0) -> T.Compose:
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if training else []
    steps += [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    if training and cutout > 0:
        steps.append(Cutout(cutout))
    return T.Compose(steps)


def open_cifar(root: str | Path | None, split: str = "train") -> CifarDataset:
    """A CIFAR python folder's ``train`` or ``val`` (test batch) split, or one sentence saying what is wrong."""
    if root is None:
        raise ConfigError("architecture search runs on CIFAR: pass --data with the folder of cifar-10-batches-py.")
    if not Path(root).is_dir():
        raise ConfigError(f"CIFAR folder {root} does not exist.")
    if find_cifar(root) is None:
        raise ConfigError(
            f"{root} holds no CIFAR python batches; expected cifar-10-batches-py/ (data_batch_1..5, "
            "test_batch, batches.meta) from cifar-10-python.tar.gz."
        )
    return CifarDataset(root, split)


def split_for_search(size: int, train_portion: float) -> tuple[range, range]:
    """DARTS's split: the first ``train_portion`` of the training images train the weights, the rest alpha."""
    if not 0.0 < train_portion < 1.0:
        raise ConfigError(f"--train-portion must be between 0 and 1, got {train_portion}.")
    cut = int(size * train_portion)
    if cut == 0 or cut == size:
        raise ConfigError(f"{size} training images are too few to split at {train_portion}.")
    return range(cut), range(cut, size)
