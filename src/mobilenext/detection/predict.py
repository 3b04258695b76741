"""``mobilenext detect predict``: boxes, labels and scores of images, drawn onto PNG copies."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_bounding_boxes

from .._io import OutputExistsError, atomic_path, mirrored_outputs
from ..data.images import read_image
from ..errors import ConfigError, ImageError

__all__ = ["detect_images", "draw_detections", "plan_outputs"]


def draw_detections(image: torch.Tensor, detections: dict[str, torch.Tensor], classes: Sequence[str]) -> Image.Image:
    """``image`` (uint8 CHW) with each detection's box and ``class score`` label drawn on it."""
    labels = [
        f"{classes[int(label) - 1]} {float(score):.2f}"
        for label, score in zip(detections["labels"], detections["scores"])
    ]
    width = max(1, round(max(image.shape[1:]) / 200))  # lines stay visible on large photos
    drawn = draw_bounding_boxes(image, detections["boxes"], labels=labels, width=width, colors="yellow")
    return F.to_pil_image(drawn)


def plan_outputs(paths: Sequence[Path], folder: str | Path, overwrite: bool = False) -> list[Path]:
    """The PNG each image's drawing goes to in ``folder`` (see :func:`mobilenext._io.mirrored_outputs`), checked
    before any work: never an input image, never an existing file unless ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"-o {folder} is a file; give a folder for the drawn images.")
    outputs = mirrored_outputs(paths, folder, ".png")
    first: dict[Path, Path] = {}
    for path, output in zip(paths, outputs):
        if output in first:
            clash = f"and {first[output]} would both be drawn into {output}"
            raise ConfigError(f"{path} {'is given twice' if first[output] == path else clash}; pass each image once.")
        first[output] = path
    inputs = {p.resolve() for p in paths}
    clobbered = [o for o in outputs if o.resolve() in inputs]
    if clobbered:
        raise ConfigError(f"drawing into {folder} would replace the input image {clobbered[0]}; choose another -o.")
    existing = [o for o in outputs if o.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"{existing[0]}{more} exist(s) in {folder}; pass --overwrite to replace them, or choose another -o."
        )
    return outputs


@torch.no_grad()
def detect_images(
    model: nn.Module,
    paths: Sequence[str | Path],
    classes: Sequence[str],
    outputs: Sequence[Path] | None = None,
    overwrite: bool = False,
) -> Iterator[tuple[Path, dict[str, torch.Tensor] | Exception]]:
    """The detector's detections per image (its own post-processing: scores above ``model.score_thresh``, NMS,
    the best ``model.detections_per_img``), in original pixel coordinates; with ``outputs`` (one path per image,
    e.g. from :func:`plan_outputs`) also the image with its boxes drawn, as PNG. An unreadable image yields
    its error instead."""
    model.eval()
    device = next(model.parameters()).device
    for index, path in enumerate(map(Path, paths)):
        try:
            image = F.pil_to_tensor(read_image(path))
        except ImageError as error:
            yield path, error
            continue
        result = model([F.to_dtype(image, torch.float32, scale=True).to(device)])[0]
        detections = {k: v.cpu() for k, v in result.items()}
        if outputs is not None:
            outputs[index].parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(outputs[index], overwrite=overwrite) as tmp:
                draw_detections(image, detections, classes).save(tmp, format="PNG")
        yield path, detections
