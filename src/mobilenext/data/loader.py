"""Transforms (timm's) and data loaders that shard across DDP ranks, tolerate bad images, and augment each sample
the same way whatever the loader's workers did before.

Training samplers yield ``(epoch, index)`` keys (:class:`ResumableSampler`), and :class:`Reseeded` seeds
``random``, numpy and torch from ``(seed, epoch, index)`` before the sample is read and augmented. A sample's
augmentation is then a function of the run's seed, the epoch and the sample alone: not of which worker reads
it, how many workers there are (``-j 0`` included) or what they read before, so a run resumed at any epoch, and
mid-epoch where a task resumes there, sees the very batches an uninterrupted run saw.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from timm.data import create_transform, resolve_data_config
from torch import nn

from .datasets import TolerantDataset, collate_tolerant

__all__ = [
    "Reseeded",
    "ResumableSampler",
    "SampleKey",
    "ShardSampler",
    "create_loader",
    "create_transforms",
    "default_workers",
    "loader_generator",
    "resolve_transform_config",
]


def default_workers() -> int:
    """Four loader processes per rank, fewer on a machine with fewer cores (more would only contend)."""
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


_TRANSFORM_KEYS = ("img_size", "crop_pct", "interpolation", "mean", "std")


def resolve_transform_config(model: nn.Module, defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Input size, crop, interpolation and normalisation: the user's value, else the dataset's, else the model's."""
    model_cfg = resolve_data_config({}, model=model)
    resolved = {
        "img_size": model_cfg["input_size"][-1],
        "crop_pct": model_cfg["crop_pct"],
        "interpolation": model_cfg["interpolation"],
        "mean": tuple(model_cfg["mean"]),
        "std": tuple(model_cfg["std"]),
    }
    for key in _TRANSFORM_KEYS:
        for source in (overrides, defaults):
            if source.get(key) is not None:
                resolved[key] = tuple(source[key]) if key in ("mean", "std") else source[key]
                break
    return resolved


def create_transforms(data_cfg: dict[str, Any], augment: dict[str, Any] | None = None):
    """(train, eval) transforms from timm; ``augment`` holds timm's training options (aa, reprob, scale, ...)."""
    common = dict(
        input_size=(3, data_cfg["img_size"], data_cfg["img_size"]),
        interpolation=data_cfg["interpolation"],
        mean=data_cfg["mean"],
        std=data_cfg["std"],
    )
    eval_tf = create_transform(**common, is_training=False, crop_pct=data_cfg["crop_pct"])
    if augment is None:
        return None, eval_tf
    return create_transform(**common, is_training=True, **augment), eval_tf


class ShardSampler(torch.utils.data.Sampler[int]):
    """Evaluation sampler: rank r takes indices r, r+W, r+2W, ... with no padding, so metrics summed over
    ranks count every image exactly once (``DistributedSampler`` pads with repeats)."""

    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1):
        self.num_samples, self.rank, self.world_size = num_samples, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.world_size))

    def __len__(self) -> int:
        return math.ceil((self.num_samples - self.rank) / self.world_size)


class SampleKey(NamedTuple):
    """What a training sampler hands the loader: the sample, and the epoch it is drawn in."""

    epoch: int
    index: int


class ResumableSampler(torch.utils.data.Sampler[SampleKey]):
    """Shuffles by ``(seed, epoch)`` and shards over ranks like ``DistributedSampler`` with ``drop_last`` (every
    rank gets the same number of images, in the same order), and can start an epoch ``skip`` images in, so a
    resumed run sees the batches the interrupted one would have seen without loading the ones it already
    trained on. Yields :class:`SampleKey` s, which :class:`Reseeded` turns into the sample's random state."""

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.per_rank = size // world_size
        self.epoch = self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[SampleKey]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        mine = order[: self.per_rank * self.world_size][self.rank :: self.world_size]
        return (SampleKey(self.epoch, index) for index in mine[self.skip :].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.skip


class Reseeded(torch.utils.data.Dataset):
    """A dataset read by :class:`SampleKey`: ``random``, numpy and torch are seeded from ``(seed, epoch, index)``
    before ``dataset[index]`` is read and augmented. In a loader worker the seeds simply replace the worker's;
    in the main process (``-j 0``) the generators' states are put back afterwards, so that the training step's
    own randomness (dropout, mixup) does not depend on the loader."""

    def __init__(self, dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey):
        epoch, index = key
        in_worker = torch.utils.data.get_worker_info() is not None
        with contextlib.nullcontext() if in_worker else _generators_kept():
            sample_seed = (self.seed * 1_000_003 + epoch) * 10_000_019 + index
            random.seed(sample_seed)
            np.random.seed(sample_seed % 2**32)
            torch.default_generator.manual_seed(sample_seed)  # the CPU's only: augmentation never draws on a GPU
            return self.dataset[index]

    def __getattr__(self, name: str):
        # "dataset": not yet set (unpickling in a worker); dunders such as __getitems__ (a Subset's batch read)
        # must not reach the wrapped dataset, or the loader would read past this wrapper
        if name == "dataset" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


@contextlib.contextmanager
def _generators_kept() -> Iterator[None]:
    python, numpy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(cpu)


def create_loader(
    dataset,
    batch_size: int,
    training: bool,
    workers: int = 4,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 42,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A loader yielding ``(images, targets, problems)``.

    Training draws from a :class:`ResumableSampler` through :class:`Reseeded`: the order depends only on
    ``seed`` and the epoch (``sampler.set_epoch``), each sample's augmentation only on ``seed``, the epoch and
    the sample, which makes a resumed run see the same batches with any number of workers.
    """
    iterable = isinstance(dataset, torch.utils.data.IterableDataset)
    sampler = None
    if not iterable:
        dataset = TolerantDataset(dataset, substitute=training)
        if training:
            dataset, sampler = Reseeded(dataset, seed), ResumableSampler(len(dataset), seed, rank, world_size)
        else:
            sampler = ShardSampler(len(dataset), rank, world_size)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_tolerant,
        drop_last=training,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        generator=loader_generator(seed),
    )


def loader_generator(seed: int) -> torch.Generator:
    """The loader's own generator, for the worker seeds it draws when it starts its workers: drawn from the global
    one, that draw would shift the training step's randomness by one in the epoch a resumed run starts them."""
    return torch.Generator().manual_seed(seed)
