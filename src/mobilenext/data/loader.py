"""Transforms (timm's) and data loaders that shard across DDP ranks and tolerate bad images."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import torch
from timm.data import create_transform, resolve_data_config
from torch import nn

from .datasets import TolerantDataset, collate_tolerant

__all__ = [
    "ResumableSampler",
    "ShardSampler",
    "create_loader",
    "create_transforms",
    "default_workers",
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


class ResumableSampler(torch.utils.data.Sampler[int]):
    """Shuffles by ``(seed, epoch)`` and shards over ranks like ``DistributedSampler`` (every rank gets the
    same number of images), and can start an epoch ``skip`` images in, so a resumed run sees the batches the
    interrupted one would have seen without loading the ones it already trained on."""

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.per_rank = size // world_size
        self.epoch = self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        mine = order[: self.per_rank * self.world_size][self.rank :: self.world_size]
        return iter(mine[self.skip :].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.skip


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

    Training shuffles with ``DistributedSampler`` even on one process: its order depends only on
    ``seed`` and the epoch (``sampler.set_epoch``), which makes a resumed run see the same batches.
    """
    iterable = isinstance(dataset, torch.utils.data.IterableDataset)
    sampler = None
    if not iterable:
        dataset = TolerantDataset(dataset, substitute=training)
        if training:
            sampler = torch.utils.data.DistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
            )
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
    )
