"""Classify images with a model's own evaluation transform (mmpretrain's ``inference_model`` shape)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config
from torch import nn

from ..classification.files import RUN_ORIGIN, label_names
from ..data.images import read_image
from ..engine.checkpoint import Restored
from ..errors import CheckpointError, ConfigError, ImageError
from .restore import get_model, restore_model

__all__ = ["class_names", "describe_inputs", "inference_model", "predict"]

log = logging.getLogger("mobilenext")

ImageLike = str | Path | Image.Image | np.ndarray


def class_names(model: nn.Module) -> list[str]:
    """Human-readable class names in label order: the model's own (its ``pretrained_cfg``), ImageNet's for 1000
    classes, else the indices."""
    return label_names(model) or [str(i) for i in range(model.num_classes)]


def describe_inputs(restored: Restored) -> str:
    """What :func:`predict` will do to an image and call its classes, and where those settings come from."""
    model = restored.model
    cfg = resolve_model_data_config(model)
    size = "x".join(map(str, cfg["input_size"][1:]))
    numbers = ", ".join  # short lists, printed plainly
    names = getattr(model, "pretrained_cfg", {}).get("label_names")
    if names and len(names) == model.num_classes:
        classes = "its dataset's" if restored.origin == RUN_ORIGIN else "the pretrained_cfg's"
    elif model.num_classes == 1000:
        classes = "ImageNet's"
    else:
        classes = "indices (no names stored)"
    return (
        f"input {size} px, crop {cfg['crop_pct']:g}, {cfg['interpolation']}, mean "
        f"({numbers(f'{v:.4g}' for v in cfg['mean'])}), std ({numbers(f'{v:.4g}' for v in cfg['std'])}) "
        f"from {restored.origin}; class names: {classes}"
    )


def _as_model(model_or_name: nn.Module | str | Path, **kwargs: Any) -> nn.Module:
    """A model, a registered model name (built by :func:`mobilenext.get_model`), or a checkpoint file (the
    model it was trained as, with its run's input settings and class names)."""
    if isinstance(model_or_name, nn.Module):
        return model_or_name
    path = Path(model_or_name)
    if path.is_file():
        restored = restore_model(path, kwargs.pop("model", None), task="classification", **kwargs)
        log.info(f"{restored.name} from {path}: {describe_inputs(restored)}")
        return restored.model
    if path.suffix or len(path.parts) > 1:  # meant as a file: say so, not "unknown model 'run/best.pth'"
        raise CheckpointError(f"no checkpoint file {path} (nor a model of that name); check the path.")
    return get_model(str(model_or_name), **kwargs)


@torch.inference_mode()
def predict(
    model: nn.Module, images: Iterable[ImageLike], topk: int = 5, batch_size: int = 32
) -> Iterator[tuple[ImageLike, list[tuple[int, str, float]] | ImageError]]:
    """Yield ``(image, [(label, class name, score), ...])`` per image, batched; an unreadable image yields
    ``(image, ImageError)`` instead, so one bad file does not stop the rest.

    Images go through the model's evaluation transform as timm resolves it from ``model.pretrained_cfg``: for
    a model restored from a ``mobilenext train`` checkpoint that is the run's own (input size, crop,
    interpolation, normalisation), and class names are its dataset's.

    The images run through the model's fastest exact form, a copy with BatchNorm folded into the convolutions
    (:func:`mobilenext.deploy.fuse`) in channels-last memory; ``model`` itself is left as it was.
    """
    from ..deploy.fuse import fuse

    if topk < 1 or batch_size < 1:
        raise ConfigError(f"topk and batch_size must be at least 1, not {topk} and {batch_size}.")
    transform = create_transform(**resolve_model_data_config(model))
    names = class_names(model)
    topk = min(topk, model.num_classes)
    device = next(model.parameters()).device
    fast = fuse(model).to(memory_format=torch.channels_last)

    def run(batch: list[tuple[ImageLike, torch.Tensor]]):
        images = torch.stack([t for _, t in batch]).to(device, memory_format=torch.channels_last)
        scores = fast(images).softmax(-1)
        values, labels = scores.topk(topk, dim=-1)
        for (image, _), vals, labs in zip(batch, values.tolist(), labels.tolist()):
            yield image, [(lab, names[lab], val) for lab, val in zip(labs, vals)]

    batch: list[tuple[ImageLike, torch.Tensor]] = []
    for image in images:
        try:
            batch.append((image, transform(read_image(image))))
        except ImageError as e:
            yield image, e
            continue
        if len(batch) == batch_size:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)


def inference_model(
    model_or_name: nn.Module | str | Path, image: ImageLike | list[ImageLike], topk: int = 5, **kwargs: Any
) -> dict | list[dict]:
    """Classify an image, or a list of images (one batch), with a model, a model name or a checkpoint file (see
    :func:`predict` for how images are prepared). Returns, per image, ``pred_label``, ``pred_class``,
    ``pred_score``, ``pred_scores`` (top-k scores) and ``topk`` ([(label, class, score), ...]): a dict for one
    image, a list of dicts for a list. An unreadable image raises :class:`~mobilenext.errors.ImageError`.
    ``kwargs`` go to :func:`mobilenext.get_model` when a name is given (e.g. ``pretrained=PATH``), or to
    :func:`~mobilenext.api.restore_model` for a checkpoint (e.g. ``model=NAME`` for a plain weights file of an
    ambiguous shape)."""
    batch = isinstance(image, list | tuple)
    images = list(image) if batch else [image]
    if not images or not all(isinstance(i, ImageLike) for i in images):
        raise ConfigError(
            "inference_model takes an image (a path, a PIL image or an HxWxC uint8 array) or a non-empty list "
            f"of them, not {type(image).__name__}" + (" holding other things" if images and batch else "") + "."
        )
    model = _as_model(model_or_name, **kwargs)
    results = [_as_dict(result) for _, result in predict(model, images, topk=topk, batch_size=len(images))]
    return results if batch else results[0]


def _as_dict(result: list[tuple[int, str, float]] | ImageError) -> dict:
    if isinstance(result, ImageError):
        raise result
    label, name, score = result[0]
    return dict(
        pred_label=label,
        pred_class=name,
        pred_score=score,
        pred_scores=np.array([s for _, _, s in result]),
        topk=result,
    )
