"""Datasets: the embedded digits, CIFAR python batches (read without unpickling code), image folders."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from helpers import make_image_folder
from mobilenext.data import (
    CifarDataset,
    DigitsDataset,
    create_loader,
    create_transforms,
    load_digits,
    open_datasets,
    resolve_transform_config,
)
from mobilenext.errors import ConfigError


def test_digits_are_the_uci_set_split_stratified_and_disjoint():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    train, val = DigitsDataset("train"), DigitsDataset("val")
    assert len(train) + len(val) == 1797 and len(val) == 359
    # Every digit is held out in proportion (20% +- one image).
    assert all(abs(n - c * 0.2) <= 1 for n, c in zip(np.bincount(val.targets), np.bincount(labels)))
    seen = {img.tobytes() + bytes([t]) for img, t in zip(train.images, train.targets)}
    held_out_only = sum(img.tobytes() + bytes([t]) not in seen for img, t in zip(val.images, val.targets))
    assert held_out_only >= 355  # a handful of digits are pixel-identical duplicates in the UCI data itself


def test_digits_split_is_fixed():
    assert np.array_equal(DigitsDataset("val").targets, DigitsDataset("val").targets)
    image, label = DigitsDataset("val")[0]
    assert image.size == (8, 8) and image.mode == "RGB" and 0 <= label <= 9


def _write_cifar(root, name="cifar10", n=6, drop=()):
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
    key = b"labels" if name == "cifar10" else b"fine_labels"
    for f in files:
        if f in drop:
            continue
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: list(rng.integers(0, 10, n))}
        (folder / f).write_bytes(pickle.dumps(batch))
    meta = (
        {b"label_names": [f"c{i}" for i in range(10)]}
        if name == "cifar10"
        else {b"fine_label_names": [f"c{i}" for i in range(100)]}
    )
    (folder / ("batches.meta" if name == "cifar10" else "meta")).write_bytes(pickle.dumps(meta))
    return folder


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_python_format(tmp_path, name):
    _write_cifar(tmp_path, name)
    data = open_datasets(str(tmp_path))
    assert data.kind == "cifar" and len(data.train) == (30 if name == "cifar10" else 6) and len(data.val) == 6
    assert len(data.classes) == (10 if name == "cifar10" else 100)
    image, label = data.train[0]
    assert image.size == (32, 32) and isinstance(label, int)
    raw = pickle.loads(
        (tmp_path / next(tmp_path.iterdir()).name / ("test_batch" if name == "cifar10" else "test")).read_bytes()
    )
    assert np.array_equal(np.asarray(data.val[2][0]), raw[b"data"][2].reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar_missing_batches_are_named(tmp_path):
    _write_cifar(tmp_path, drop=("data_batch_3", "data_batch_5"))
    with pytest.raises(ConfigError, match="missing data_batch_3, data_batch_5"):
        open_datasets(str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_batches_cannot_run_code(tmp_path):
    folder = _write_cifar(tmp_path)
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil()}))
    with pytest.raises(ConfigError, match="refusing to load builtins.print"):
        CifarDataset(tmp_path, "train")


def test_image_folder_classes_and_val_mapping(tmp_path):
    make_image_folder(tmp_path, classes=("ant", "bee", "cat"), per_class=2)
    # val lacks "bee": its labels must still use the train split's indices.
    for f in (tmp_path / "val" / "bee").iterdir():
        f.unlink()
    (tmp_path / "val" / "bee").rmdir()
    data = open_datasets(str(tmp_path))
    assert data.classes == ("ant", "bee", "cat")
    assert sorted({t for _, t in data.val.reader.samples}) == [0, 2]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "is empty"),
        ("no_val", "has no val/ folder"),
        ("empty_class", "class folder bee in .* has no images"),
    ],
)
def test_bad_data_folders(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
    if layout in ("no_val", "empty_class"):
        make_image_folder(root, classes=("ant", "bee"), per_class=1)
    if layout == "no_val":
        for f in sorted((root / "val").rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        (root / "val").rmdir()
    if layout == "empty_class":
        for f in (root / "train" / "bee").iterdir():
            f.unlink()
    with pytest.raises(ConfigError, match=message):
        open_datasets(str(root))


def test_unreadable_images_are_reported_not_fatal(tmp_path):
    make_image_folder(tmp_path, classes=("ant", "bee"), per_class=3, corrupt=1, truncated=1)
    data = open_datasets(str(tmp_path))
    cfg = resolve_transform_config(torch.nn.Identity(), {"img_size": 16, "crop_pct": 1.0}, {})
    train_tf, eval_tf = create_transforms(cfg, {})
    data.train.transform, data.val.transform = train_tf, eval_tf
    # Training: bad images are replaced so batches stay full, and reported.
    images, targets, problems = next(iter(create_loader(data.train, 8, training=True, workers=0)))
    assert images.shape == (8, 3, 16, 16) and len(problems) == 2
    assert any("broken.jpg" in p for p in problems) and any("truncated.png" in p for p in problems)
    # Evaluation: bad images are left out of the batch (and so of the metrics).
    batches = list(create_loader(data.val, 16, training=False, workers=0))
    assert sum(len(t) for _, t, _ in batches) == 6 and sum(len(p) for *_, p in batches) == 2


def test_shard_sampler_covers_every_image_once():
    from mobilenext.data import ShardSampler

    seen = [i for rank in range(3) for i in ShardSampler(10, rank, 3)]
    assert sorted(seen) == list(range(10)) and [len(ShardSampler(10, r, 3)) for r in range(3)] == [4, 3, 3]
