"""``mobilenext validate``: accuracy, loss and speed of a checkpoint (or its EMA weights) on a dataset.

A checkpoint written by ``mobilenext train`` remembers its model, dataset and preprocessing, so
``mobilenext validate runs/x/best.pth`` reproduces the accuracy logged when it was saved.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..data import DATA_DEFAULTS, create_loader, create_transforms, open_datasets, resolve_transform_config
from ..data.loader import default_workers
from ..models.checkpoint import restore_model
from .distributed import cleanup, init_distributed
from .evaluate import evaluate

__all__ = ["validate"]

log = logging.getLogger("mobilenext")


def validate(
    checkpoint: str | Path | None,
    model: str | None = None,
    data: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    use_ema: bool = True,
    img_size: int | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | None = None,
    amp: bool = False,
    channels_last: bool = True,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint``; arguments left ``None`` come from the checkpoint's run, then the defaults."""
    net, record = restore_model(checkpoint, model, use_ema=use_ema, num_classes=num_classes)
    args = record.get("args", {})
    if data is None and dataset is None:
        data, dataset = args.get("data"), args.get("dataset", "")
    datasets = open_datasets(data, dataset or "", train_split=None, val_split=split or args.get("val_split"))
    if not checkpoint and num_classes is None and datasets.classes:
        net.reset_classifier(len(datasets.classes))
    model_name = record["model"]

    dist = init_distributed(device)
    try:
        if not checkpoint and dist.is_main:
            log.warning(f"no --checkpoint: {model_name} has random weights.")
        net.to(dist.device)
        if channels_last:
            net.to(memory_format=torch.channels_last)

        stored = record.get("data_config", {})
        overrides = {"img_size": img_size, "crop_pct": crop_pct, "interpolation": interpolation}
        defaults = {**DATA_DEFAULTS.get(datasets.kind, {}), **stored}
        data_config = resolve_transform_config(net, defaults, overrides)
        datasets.val.transform = create_transforms(data_config)[1]
        loader = create_loader(
            datasets.val,
            batch_size,
            training=False,
            workers=defaults.get("workers", default_workers()) if workers is None else workers,
            rank=dist.rank,
            world_size=dist.world_size,
        )
        metrics = evaluate(net, loader, dist.device, amp=amp, channels_last=channels_last, progress=dist.is_main)
        return {
            "model": model_name,
            "checkpoint": str(checkpoint),
            "ema": use_ema and record.get("has_ema", False),
            "dataset": datasets.description,
            **data_config,
            **metrics,
            "logged": record.get("metrics", {}),
        }
    finally:
        cleanup()
