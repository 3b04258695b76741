"""Open a dataset from what the user typed, check it, and never let one bad image stop an epoch.

``--data`` may be nothing (the embedded digits), an ImageNet-style folder (``train/<class>/*.jpg`` and
``val/<class>/*.jpg``) or a ``.tar`` of one, a CIFAR python folder, or, with ``--dataset NAME``, anything
``timm.data.create_dataset`` reads (``hfds/...``, ``wds/...``, ``tfds/...``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.data import create_dataset as timm_create_dataset
from timm.data.readers import create_reader
from timm.data.readers.img_extensions import get_img_extensions

from ..errors import ConfigError, ImageError
from .cifar import CifarDataset, find_cifar
from .digits import DigitsDataset
from .images import read_image

__all__ = [
    "DATA_DEFAULTS",
    "Datasets",
    "UnreadableImage",
    "TolerantDataset",
    "collate_tolerant",
    "open_datasets",
]

# Transform settings a dataset brings with it (used where neither the user nor the config set a value).
# Digits must not be flipped; tiny images take mild crops. CIFAR statistics are the usual ones.
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": dict(
        img_size=32, crop_pct=1.0, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3,
        scale=(0.7, 1.0), ratio=(0.85, 1.18), hflip=0.0, color_jitter=0.0, workers=0,
    ),
    "cifar": dict(
        img_size=32, crop_pct=1.0, interpolation="bilinear", mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616), scale=(0.5, 1.0),
    ),
    "folder": {},
    "timm": {},
}  # fmt: skip

_VAL_SPLITS = ("val", "validation")


class UnreadableImage(Exception):
    """Raised by a dataset for one image that cannot be decoded; :class:`TolerantDataset` turns it into a report."""


@dataclass
class Datasets:
    train: torch.utils.data.Dataset | None
    val: torch.utils.data.Dataset
    classes: tuple[str, ...]
    kind: str  # a key of DATA_DEFAULTS
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


class ReaderDataset(torch.utils.data.Dataset):
    """A map-style dataset over a timm reader (folders, tar files, HF datasets) that decodes images eagerly.

    Decoding inside ``__getitem__`` (``img.load()``) makes truncated files fail here, where they can be
    reported, rather than later inside a transform.
    """

    def __init__(self, reader, transform=None):
        self.reader, self.transform = reader, transform

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int):
        source, target = self.reader[index]
        try:  # read_image's message names the file, so it is the report
            if hasattr(source, "read"):  # folder and tar readers hand over an open file
                with source:
                    image = read_image(source, name=self.filename(index))
            else:  # a path, or a PIL image (Hugging Face datasets)
                image = read_image(source, name=self.filename(index))
        except ImageError as e:
            raise UnreadableImage(str(e)) from None
        if self.transform is not None:
            image = self.transform(image)
        return image, target

    def filename(self, index: int) -> str:
        return str(self.reader.filename(index, absolute=True))


class TolerantDataset(torch.utils.data.Dataset):
    """Wrap a dataset so an unreadable image is counted and reported instead of crashing the loader.

    Items become ``(image, target, problem)``. For training (``substitute=True``) the next readable image
    takes the bad one's place so batches stay full (mixup needs even batches, DDP equal ones); for
    evaluation the image is ``None`` and :func:`collate_tolerant` leaves it out of the metrics.
    """

    _MAX_CONSECUTIVE = 32

    def __init__(self, dataset, substitute: bool):
        self.dataset, self.substitute = dataset, substitute

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return (*self.dataset[index], None)
        except UnreadableImage as e:
            problem = str(e)
        if not self.substitute:
            return None, -1, problem
        for step in range(1, self._MAX_CONSECUTIVE):
            try:
                return (*self.dataset[(index + step) % len(self)], problem)
            except UnreadableImage:
                continue
        raise ConfigError(
            f"{self._MAX_CONSECUTIVE} consecutive images are unreadable (first: {problem}); check the dataset."
        )

    def __getattr__(self, name: str):
        # "dataset": not yet set (unpickling in a worker); dunders such as __getitems__ (a Subset's batch read)
        # must not reach the wrapped dataset, or the loader would read past this wrapper
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def collate_tolerant(batch):
    """Stack the readable samples; return ``(images, targets, problems)`` with one string per bad image."""
    problems = [item[2] for item in batch if len(item) > 2 and item[2] is not None]
    good = [item[:2] for item in batch if item[0] is not None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), problems
    images, targets = torch.utils.data.default_collate(good)
    return images, targets, problems


def _has_images(folder: Path) -> bool:
    extensions = get_img_extensions(as_set=True)
    return any(os.path.splitext(f)[1].lower() in extensions for _, _, files in os.walk(folder) for f in files)


def _check_image_folder(split_dir: Path) -> None:
    """Every class folder must hold images: an empty one would silently shift every class index after it."""
    if not any(split_dir.iterdir()):
        raise ConfigError(f"{split_dir} is empty; it should hold one folder of images per class.")
    empty = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not _has_images(d))
    if empty:
        raise ConfigError(
            f"class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} in {split_dir} "
            f"{'have' if len(empty) > 1 else 'has'} no images; add images or remove "
            f"{'them' if len(empty) > 1 else 'it'}."
        )


def _check_links(split_dir: Path) -> None:
    """A folder reached twice through symbolic links (a link to its own ancestor, or two links to one folder)
    would list its images again and again, as timm's reader follows links: one sentence instead."""
    seen: dict[str, str] = {}
    for folder, _, _ in os.walk(split_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            raise ConfigError(
                f"{folder} is {seen[real]} again, reached through a symbolic link; its images would be read more "
                "than once (a link to a folder that contains it loops forever): remove the link."
            )
        seen[real] = folder


def _check_held_out(val: Any, val_dir: Path, train_dir: Path) -> None:
    """Held-out images that are training images (a link from val/ into train/) would score as unseen ones;
    checked also when only the held-out split is read (``validate``)."""
    if not train_dir.is_dir() or os.path.realpath(train_dir) == os.path.realpath(val_dir):
        return
    training = os.path.realpath(train_dir) + os.sep
    shared = [path for path, _ in val.samples if os.path.realpath(path).startswith(training)]
    if shared:
        raise ConfigError(
            f"{len(shared)} image(s) of {val_dir} are images of {train_dir} (through symbolic links), e.g. "
            f"{shared[0]}; a held-out split must not hold training images."
        )


def _open_image_folder(root: Path, train_split: str | None, val_split: str | None) -> Datasets:
    if val_split is None:  # accept both spellings, as timm does
        val_split = next((s for s in _VAL_SPLITS if (root / s).is_dir()), "val")
    splits = [s for s in (train_split, val_split) if s]
    missing = [s for s in splits if not (root / s).is_dir()]
    if missing:
        raise ConfigError(
            f"{root} has no {' or '.join(m + '/' for m in missing)} folder; expected an ImageNet-style layout "
            f"{root}/{train_split or 'train'}/<class>/<image> and {root}/{val_split}/<class>/<image>."
        )
    for split in splits:
        _check_image_folder(root / split)
        _check_links(root / split)
    first = create_reader("", root=str(root / splits[0]))
    class_to_idx = first.class_to_idx  # the val split takes the train split's class indices
    readers = {splits[0]: first}
    if len(splits) > 1:
        unknown = sorted({d.name for d in (root / splits[1]).iterdir() if d.is_dir()} - set(class_to_idx))
        if unknown:  # timm's reader would leave their images out without a word
            raise ConfigError(
                f"{root / splits[1]} has class folder{'s' if len(unknown) > 1 else ''} {', '.join(unknown[:5])} that "
                f"{root / splits[0]} has not; the held-out split must use the training split's classes."
            )
        readers[splits[1]] = create_reader("", root=str(root / splits[1]), class_map=dict(class_to_idx))
    _check_held_out(readers[val_split], root / val_split, root / (train_split or "train"))
    classes = tuple(sorted(class_to_idx, key=class_to_idx.get))
    train = ReaderDataset(readers[train_split]) if train_split else None
    return Datasets(train, ReaderDataset(readers[val_split]), classes, "folder", f"image folder {root}")


def _open_tar(root: Path, train_split: str | None) -> Datasets:
    if train_split:
        raise ConfigError(f"{root} is a single tar file; train on a folder with train/ and val/ (or .tar files).")
    reader = create_reader("", root=str(root))
    classes = tuple(sorted(reader.class_to_idx, key=reader.class_to_idx.get))
    return Datasets(None, ReaderDataset(reader), classes, "folder", f"image tar {root}")


def _open_timm(name: str, root: str | None, train_split: str | None, val_split: str | None) -> Datasets:
    def make(split: str | None, training: bool):
        if not split:
            return None
        try:
            return timm_create_dataset(name, root=root, split=split, is_training=training)
        except Exception as e:  # timm's readers raise many types for a missing or malformed source
            raise ConfigError(f"timm cannot open dataset {name!r} (root {root}, split {split}): {e}") from None

    val = make(val_split or "validation", False)
    reader = getattr(val, "reader", None)
    class_to_idx = getattr(reader, "class_to_idx", None) or {}
    classes = tuple(sorted(class_to_idx, key=class_to_idx.get)) if class_to_idx else ()
    return Datasets(make(train_split, True), val, classes, "timm", f"timm dataset {name} ({root})")


def open_datasets(
    data: str | None,
    dataset: str = "",
    train_split: str | None = "train",
    val_split: str | None = None,
) -> Datasets:
    """Open the train and held-out splits (``train_split=None`` opens only the held-out one, for validation)."""
    if dataset and dataset not in ("", "folder", "digits", "cifar"):
        return _open_timm(dataset, data, train_split, val_split)
    if data in (None, "", "digits") or dataset == "digits":
        train = DigitsDataset("train") if train_split else None
        val, description = DigitsDataset("val"), "embedded digits (8x8, 10 classes)"
        return Datasets(train, val, DigitsDataset.classes, "digits", description, DATA_DEFAULTS["digits"])
    root = Path(data)
    if not root.exists():
        raise ConfigError(f"data folder {root} does not exist; pass --data PATH, or omit it for the embedded digits.")
    if root.is_file():
        if root.suffix == ".tar":
            return _open_tar(root, train_split)
        raise ConfigError(f"--data {root} is a file; pass a folder (train/ and val/), a .tar, or a CIFAR folder.")
    cifar = find_cifar(root)
    if cifar is not None:
        train = CifarDataset(root, "train") if train_split else None
        val = CifarDataset(root, "val")
        return Datasets(train, val, val.classes, "cifar", f"{val.name} {cifar[1]}", DATA_DEFAULTS["cifar"])
    if not any(root.iterdir()):
        raise ConfigError(f"data folder {root} is empty; expected {root}/train/<class>/<image> and {root}/val/...")
    return _open_image_folder(root, train_split, val_split)
