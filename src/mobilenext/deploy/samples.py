"""Real images for calibration and verification, prepared exactly as the model saw them in evaluation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import UnreadableImage, create_transforms, open_datasets, resolve_transform_config
from ..errors import ConfigError

__all__ = ["sample_images", "input_config"]


def input_config(model: nn.Module, img_size: int | None = None) -> dict:
    """Input size, crop and normalisation: ``img_size`` if given, else the model's own (its ``pretrained_cfg``,
    which :func:`mobilenext.api.restore_model` sets to the training run's). Never the dataset's defaults: a
    model without a checkpoint is exported at its own resolution (224 for the ImageNet models), whatever
    images check it."""
    return resolve_transform_config(model, {}, {"img_size": img_size})


def sample_images(
    model: nn.Module,
    data: str | None = None,
    dataset: str = "",
    split: str = "val",
    count: int = 64,
    img_size: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images (and labels) drawn at random from a split, through the model's evaluation transform.

    ``split="train"`` is for calibration, any other for verification and accuracy, so the two never share
    images. ``count=0`` takes the whole split. Unreadable images are skipped.
    """
    train = split == "train"
    datasets = open_datasets(
        data, dataset, train_split="train" if train else None, val_split=None if train or split == "val" else split
    )
    source = datasets.train if train else datasets.val
    config = input_config(model, img_size)
    source.transform = create_transforms(config)[1]
    order = np.random.default_rng(seed).permutation(len(source))
    images, labels = [], []
    for index in order:
        if count and len(images) == count:
            break
        try:
            image, label = source[int(index)]
        except UnreadableImage:
            continue
        images.append(image)
        labels.append(int(label))
    if not images:
        raise ConfigError(f"no readable images in the {split} split of {datasets.description}.")
    return torch.stack(images), torch.tensor(labels)
