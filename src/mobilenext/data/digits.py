"""The embedded default dataset: 1,797 real handwritten digits (UCI optical digits, as shipped by scikit-learn).

Each sample is an 8x8 image with 17 grey levels (0..16), ten classes. It is small enough to ship inside the
package (57 kB) and real enough that a model has to learn something, so ``mobilenext train`` with no data
trains and validates offline in a few minutes. Source: E. Alpaydin, C. Kaynak, UCI Machine Learning
Repository, "Optical Recognition of Handwritten Digits" (CC BY 4.0); the file is scikit-learn's
``digits.csv.gz`` (the UCI test set), unchanged.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from PIL import Image

__all__ = ["DIGITS_CLASSES", "DIGITS_VAL_FRACTION", "DigitsDataset", "load_digits"]

DIGITS_CLASSES = tuple(str(d) for d in range(10))
DIGITS_VAL_FRACTION = 0.2
_SPLIT_SEED = 0  # the held-out split is fixed: the same 360 images for every run and every machine


@lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as ``uint8`` images (N, 8, 8) scaled to 0..255, and their labels (N,)."""
    with resources.files(__package__).joinpath("files/digits.csv.gz").open("rb") as f, gzip.open(f) as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    images = (table[:, :64].reshape(-1, 8, 8) * 255 + 8) // 16  # 0..16 -> 0..255, rounded
    return images.astype(np.uint8), table[:, 64]


def _split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """A stratified split: the same fraction of every digit is held out."""
    rng = np.random.default_rng(_SPLIT_SEED)
    held_out = []
    for digit in range(len(DIGITS_CLASSES)):
        members = np.flatnonzero(labels == digit)
        held_out.append(rng.permutation(members)[: round(len(members) * DIGITS_VAL_FRACTION)])
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[np.concatenate(held_out)] = True
    return np.flatnonzero(is_val if split == "val" else ~is_val)


class DigitsDataset(torch.utils.data.Dataset):
    """``split`` is ``"train"`` (1,438 images) or ``"val"`` (359 held-out images); items are (RGB PIL image, label)."""

    classes = DIGITS_CLASSES

    def __init__(self, split: str = "train", transform=None):
        if split not in ("train", "val"):
            raise ValueError(f"digits split must be 'train' or 'val', not {split!r}")
        images, labels = load_digits()
        index = _split_indices(labels, split)
        self.images, self.targets = images[index], labels[index]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index]).convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def filename(self, index: int) -> str:
        return f"digits[{index}]"
