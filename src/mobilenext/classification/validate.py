"""``mobilenext validate``: accuracy, loss and speed of a restored classifier on a dataset.

A checkpoint written by ``mobilenext train`` remembers its model, dataset and preprocessing, so validating
``runs/x/best.pth`` (restored by ``mobilenext.api.restore_model``) reproduces the accuracy logged when it
was saved.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..data import DATA_DEFAULTS, create_loader, create_transforms, open_datasets, resolve_transform_config
from ..data.loader import default_workers
from ..engine.checkpoint import Restored
from ..engine.distributed import cleanup, init_distributed
from .evaluate import evaluate

__all__ = ["validate"]

log = logging.getLogger("mobilenext")


def validate(
    restored: Restored,
    data: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    img_size: int | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | None = None,
    amp: bool = False,
    channels_last: bool = True,
    fit_classes: bool = False,
) -> dict[str, Any]:
    """Evaluate ``restored``; arguments left ``None`` come from its training run, then the defaults.
    ``fit_classes``: give the model (random weights) a classifier for the dataset's number of classes."""
    net, args = restored.model, restored.args
    if data is None and dataset is None:
        data, dataset = args.get("data"), args.get("dataset", "")
    datasets = open_datasets(data, dataset or "", train_split=None, val_split=split or args.get("val_split"))
    if fit_classes and datasets.classes:
        net.reset_classifier(len(datasets.classes))

    dist = init_distributed(device)
    try:
        if restored.path is None and dist.is_main:
            log.warning(f"no --checkpoint: {restored.name} has random weights.")
        net.to(dist.device)
        if channels_last:
            net.to(memory_format=torch.channels_last)

        overrides = {"img_size": img_size, "crop_pct": crop_pct, "interpolation": interpolation}
        defaults = {**DATA_DEFAULTS.get(datasets.kind, {}), **restored.data_config}  # the file's over the dataset's
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
            "model": restored.name,
            "checkpoint": str(restored.path) if restored.path else None,
            "source": restored.source,
            "ema": restored.ema,
            "dataset": datasets.description,
            **data_config,
            **metrics,
            "logged": restored.metrics,
        }
    finally:
        cleanup()
