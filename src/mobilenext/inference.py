"""Classify images with a model's own evaluation transform (mmpretrain's ``inference_model`` shape)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from timm.data import ImageNetInfo, create_transform, resolve_model_data_config
from torch import nn

from .errors import ImageError, MobileNeXtError

__all__ = ["inference_model", "predict", "load_image", "find_images", "class_names", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

ImageLike = str | Path | Image.Image | np.ndarray


def load_image(image: ImageLike) -> Image.Image:
    """Open a path, a PIL image or an HxWxC uint8 array as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    path = Path(image)
    if not path.is_file():
        raise ImageError(f"image {path} does not exist.")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # decodes fully, so a truncated file fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path} is not a readable image ({type(e).__name__}).") from None


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders (recursively) into their image files; files are kept as given."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif p.exists():
            found.append(p)
        else:
            raise MobileNeXtError(f"{p} does not exist.")
    return found


def class_names(model: nn.Module) -> list[str]:
    """Human-readable class names: ImageNet's for 1000 classes, else the model's ``class_names`` or indices."""
    names = getattr(model, "class_names", None) or getattr(model, "pretrained_cfg", {}).get("label_names")
    if names and len(names) == model.num_classes:
        return list(names)
    if model.num_classes == 1000:
        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(1000)]
    return [str(i) for i in range(model.num_classes)]


def _as_model(model_or_name: nn.Module | str, **kwargs: Any) -> nn.Module:
    if isinstance(model_or_name, str):
        from . import get_model

        return get_model(model_or_name, **kwargs)
    return model_or_name


@torch.inference_mode()
def predict(
    model: nn.Module, images: Iterable[ImageLike], topk: int = 5, batch_size: int = 32
) -> Iterator[tuple[ImageLike, list[tuple[int, str, float]] | ImageError]]:
    """Yield ``(image, [(label, class name, score), ...])`` per image, batched; an unreadable image yields
    ``(image, ImageError)`` instead, so one bad file does not stop the rest."""
    model.eval()
    transform = create_transform(**resolve_model_data_config(model))
    names = class_names(model)
    topk = min(topk, model.num_classes)
    device = next(model.parameters()).device

    def run(batch: list[tuple[ImageLike, torch.Tensor]]):
        scores = model(torch.stack([t for _, t in batch]).to(device)).softmax(-1)
        values, labels = scores.topk(topk, dim=-1)
        for (image, _), vals, labs in zip(batch, values.tolist(), labels.tolist()):
            yield image, [(lab, names[lab], val) for lab, val in zip(labs, vals)]

    batch: list[tuple[ImageLike, torch.Tensor]] = []
    for image in images:
        try:
            batch.append((image, transform(load_image(image))))
        except ImageError as e:
            yield image, e
            continue
        if len(batch) == batch_size:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)


def inference_model(model_or_name: nn.Module | str, image: ImageLike, topk: int = 5, **kwargs: Any) -> dict:
    """Classify one image. Returns ``pred_label``, ``pred_class``, ``pred_score``, ``pred_scores`` (top-k
    scores) and ``topk`` ([(label, class, score), ...]). ``kwargs`` go to :func:`mobilenext.get_model`
    when a name is given (e.g. ``pretrained=PATH``)."""
    model = _as_model(model_or_name, **kwargs)
    ((_, result),) = list(predict(model, [image], topk=topk, batch_size=1))
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
