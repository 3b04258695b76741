"""CIFAR-10 / CIFAR-100 in their original "python version" format, read from local files, safely.

The batches are pickles of numpy arrays. ``pickle.load`` on them (what torchvision does) would run any code
a tampered file carries; :class:`_ArrayUnpickler` only rebuilds numpy arrays, lists, dicts and strings.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError

__all__ = ["CIFAR_LAYOUTS", "CifarDataset", "find_cifar"]

# name -> (train files, test files, meta file, label key, class-name key)
CIFAR_LAYOUTS = {
    "cifar10": (
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": (["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}
_FOLDER_NAMES = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


class _ArrayUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ConfigError(f"CIFAR file {path} is truncated or not a CIFAR python batch ({e}).") from None
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def find_cifar(root: str | Path) -> tuple[str, Path] | None:
    """``(name, folder)`` when ``root`` (or its standard subfolder) holds CIFAR python batches, else None."""
    root = Path(root)
    for name, folder in _FOLDER_NAMES.items():
        for candidate in (root, root / folder):
            if (candidate / CIFAR_LAYOUTS[name][2]).is_file():
                return name, candidate
    return None


class CifarDataset(torch.utils.data.Dataset):
    """One split (``"train"`` or ``"val"``, the official test batch) of a CIFAR python folder."""

    def __init__(self, root: str | Path, split: str = "train", transform=None):
        found = find_cifar(root)
        if found is None:
            raise ConfigError(f"{root} holds no CIFAR python batches (batches.meta or meta not found).")
        name, folder = found
        train_files, test_files, meta_file, label_key, names_key = CIFAR_LAYOUTS[name]
        files = train_files if split == "train" else test_files
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise ConfigError(
                f"{folder} is an incomplete {name} folder: missing {', '.join(missing)}; "
                "extract the full cifar-*-python.tar.gz again."
            )
        batches = [_read_batch(folder / f) for f in files]
        self.data = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        self.classes = tuple(_read_batch(folder / meta_file)[names_key])
        self.name, self.transform = name, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def filename(self, index: int) -> str:
        return f"{self.name}[{index}]"
