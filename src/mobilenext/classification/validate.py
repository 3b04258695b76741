"""``mobilenext validate``: accuracy, loss and speed of a restored classifier on a dataset.

A checkpoint written by ``mobilenext train`` remembers its model, dataset and preprocessing, so validating
``runs/x/best.pth`` (restored by ``mobilenext.api.restore_model``) reproduces the accuracy logged when it
was saved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from ..data import DATA_DEFAULTS, create_loader, create_transforms, open_datasets, resolve_transform_config
from ..data.loader import default_workers
from ..engine.checkpoint import Restored
from ..engine.distributed import cleanup, init_distributed
from ..errors import ConfigError
from .evaluate import evaluate
from .files import RUN_ORIGIN

__all__ = ["Relabelled", "class_map", "validate"]

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
    labels, missing = class_map(restored, datasets.classes, datasets.description)

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
        held_out = datasets.val if labels is None else Relabelled(datasets.val, labels)
        if missing and dist.is_main:
            log.warning(f"{datasets.description} has no images of {len(missing)} of the run's classes "
                        f"({', '.join(missing[:5])}); the figures are over the other {len(labels)}.")  # fmt: skip
        loader = create_loader(
            held_out,
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
            "classes": len(restored.classes) - len(missing) if labels is not None else net.num_classes,
            "missing_classes": missing,
            **data_config,
            **metrics,
            "logged": restored.metrics,
        }
    finally:
        cleanup()


def class_map(restored: Restored, names: Sequence[str], description: str) -> tuple[list[int] | None, list[str]]:
    """How a dataset's labels become the model's: ``(model label of each dataset label, or None where they are the
    same; the model's classes the dataset has no images of)``. A run's checkpoint knows its class names, and a
    dataset's classes are matched to them by name, so a folder missing, renamed or added is never a silently
    shifted index; a class the run never saw is one sentence. Without names, the dataset's labels are taken as
    they are, as long as the model has as many classes."""
    names, model_classes = list(names), restored.model.num_classes
    if restored.origin != RUN_ORIGIN or not names or not restored.classes:
        if len(names) > model_classes:
            raise ConfigError(
                f"{description} has {len(names)} classes but {restored.name} has {model_classes}; evaluate it on "
                "the data it was trained for (or fine-tune it with --num-classes)."
            )
        return None, []
    known = list(restored.classes)
    unknown = [c for c in names if c not in known]
    if unknown:
        raise ConfigError(
            f"{description} has class{'es' if len(unknown) > 1 else ''} {', '.join(unknown[:5])} that "
            f"{restored.name} was not trained on (its {len(known)} classes: {', '.join(known[:5])}"
            f"{', ...' if len(known) > 5 else ''}); evaluate it on folders named as its classes."
        )
    labels = [known.index(c) for c in names]
    missing = [c for c in known if c not in names]
    return (None if labels == list(range(len(known))) else labels), missing


class Relabelled(torch.utils.data.Dataset):
    """``dataset`` with each label ``i`` given as ``labels[i]``."""

    def __init__(self, dataset, labels: Sequence[int]) -> None:
        self.dataset, self.labels = dataset, list(labels)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return image, self.labels[int(label)]
