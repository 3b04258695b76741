"""``mobilenext detect predict``: boxes, labels and scores of images, drawn onto PNG copies."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_bounding_boxes

from .._io import atomic_path
from ..errors import ImageError
from ..inference import load_image

__all__ = ["detect_images", "draw_detections"]


def draw_detections(image: torch.Tensor, detections: dict[str, torch.Tensor], classes: Sequence[str]) -> Image.Image:
    """``image`` (uint8 CHW) with each detection's box and ``class score`` label drawn on it."""
    labels = [f"{classes[int(label) - 1]} {float(score):.2f}"
              for label, score in zip(detections["labels"], detections["scores"])]
    width = max(1, round(max(image.shape[1:]) / 200))  # lines stay visible on large photos
    drawn = draw_bounding_boxes(image, detections["boxes"], labels=labels, width=width, colors="yellow")
    return F.to_pil_image(drawn)


@torch.no_grad()
def detect_images(
    model: nn.Module,
    paths: Sequence[str | Path],
    classes: Sequence[str],
    score_thresh: float = 0.3,
    output: str | Path | None = None,
) -> Iterator[tuple[Path, dict[str, torch.Tensor] | Exception]]:
    """Detections scoring at least ``score_thresh`` per image, in original pixel coordinates; with ``output``
    also ``output/<name>.png`` with the boxes drawn. An unreadable image yields its error instead."""
    model.eval()
    device = next(model.parameters()).device
    folder = Path(output) if output is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    for path in map(Path, paths):
        try:
            image = F.pil_to_tensor(load_image(path))
        except ImageError as error:
            yield path, error
            continue
        result = model([F.to_dtype(image, torch.float32, scale=True).to(device)])[0]
        keep = result["scores"] >= score_thresh
        detections = {k: v[keep].cpu() for k, v in result.items()}
        if folder is not None:
            with atomic_path(folder / f"{path.stem}.png") as tmp:
                draw_detections(image, detections, classes).save(tmp, format="PNG")
        yield path, detections
