"""SSD training augmentation: the authors' pipeline (the default) or torchvision's detection references'.

Both are the SSD recipe: photometric distortion, zoom-out onto a mean-filled canvas (up to 4x, half of the
time), a crop that keeps objects (a random IoU floor per sample), a horizontal flip, a resize to the input
size. They differ in the details, and the recipes named after the paper use the authors'
(``houqb/ssdlite-pytorch-mobilenext``, ``ssd/data/transforms``, inherited from lufficc/SSD):

============================  ==============================================  ================================
step                          the authors' (``pipeline="authors"``)             torchvision's
============================  ==============================================  ================================
pixel values                  float 0..255 from the start, never clipped       uint8, clipped after every step
brightness                    + uniform(-32, 32)                               x uniform(0.875, 1.125)
contrast                      x uniform(0.5, 1.5) (pixel values scaled)        blend with the grey mean
saturation                    HSV S x uniform(0.5, 1.5)                        blend with the grey image
hue                           HSV H + uniform(-18, 18) degrees                 the same (+-0.05 of a turn)
channel order                 one of the 6 orders, half of the time            the same
IoU crop modes                whole image, 0.1, 0.3, 0.7, 0.9, any; 50 tries   also 0.5; 40 tries
resize                        bilinear without antialiasing (cv2)              antialiased
boxes kept after the crop     centre inside the crop, any size > 0             centre inside, >= 1 px at the end
============================  ==============================================  ================================

Each step of the photometric distortion happens with probability 1/2; contrast comes first or last (1/2
each). The datasets hold their coordinate conventions (:class:`~mobilenext.detection.data.VOCDetection`'s
``authors_coordinates``) and their choice of images (COCO's ``drop_unannotated``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.transforms import v2 as T

from ..errors import require

__all__ = [
    "PIPELINES",
    "AuthorsImageTransform",
    "AuthorsPhotometricDistort",
    "detection_transforms",
    "hsv_to_rgb",
    "rgb_to_hsv",
]

PIPELINES = ("authors", "torchvision")

# Their RandomSampleCrop's modes as torchvision's RandomIoUCrop encodes them: 1.0 keeps the whole image,
# 0.0 is "any crop holding an object's centre". torchvision's default adds 0.5.
AUTHORS_IOU_FLOORS = [0.0, 0.1, 0.3, 0.7, 0.9, 1.0]
AUTHORS_CROP_TRIES = 50


# ---- colour, as OpenCV converts float RGB (what the authors' ConvertColor calls) --------------------------
def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` RGB (any range) to H in degrees [0, 360), S = (max - min) / max, V = max (OpenCV's float
    convention)."""
    r, g, b = rgb.unbind(0)
    value, _ = rgb.max(0)
    chroma = value - rgb.min(0).values
    safe = chroma.where(chroma > 0, torch.ones_like(chroma))
    hue = torch.where(
        value == r, (g - b) / safe * 60, torch.where(value == g, 120 + (b - r) / safe * 60, 240 + (r - g) / safe * 60)
    )
    hue = torch.where(chroma > 0, hue % 360, torch.zeros_like(hue))
    saturation = chroma / value.where(value > 0, torch.ones_like(value))  # 0 where value is 0 (chroma is too)
    return torch.stack([hue, saturation, value])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rgb_to_hsv`, also for S > 1 (which the authors' saturation step produces and
    OpenCV converts without clipping: the smallest channel goes negative)."""
    hue, saturation, value = hsv.unbind(0)
    channels = []
    for n in (5, 3, 1):  # R, G, B: V - V S max(0, min(k, 4 - k, 1)), k = (n + H / 60) mod 6
        k = (n + hue / 60) % 6
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels)


class AuthorsPhotometricDistort:
    """The authors' photometric distortion on a float ``[3, H, W]`` image in 0..255, without clipping:
    brightness + U(-32, 32); then contrast x U(0.5, 1.5) either first or last around saturation (HSV S x
    U(0.5, 1.5)) and hue (HSV H + U(-18, 18) degrees); then a random channel order. Each step with p = 1/2."""

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        x = image.as_subclass(torch.Tensor).float()
        if _coin():
            x = x + _uniform(-32, 32)
        contrast_first = _coin()
        if contrast_first and _coin():
            x = x * _uniform(0.5, 1.5)
        hsv = rgb_to_hsv(x)
        if _coin():
            hsv[1] *= _uniform(0.5, 1.5)
        if _coin():
            hsv[0] = (hsv[0] + _uniform(-18, 18)) % 360
        x = hsv_to_rgb(hsv)
        if not contrast_first and _coin():
            x = x * _uniform(0.5, 1.5)
        if _coin():
            x = x[torch.randperm(3)]
        return tv_tensors.wrap(x, like=image), target


def _coin() -> bool:
    return bool(torch.rand(()) < 0.5)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


# ---- geometry ----------------------------------------------------------------------------------------
class _IoUCropIfBoxes:
    """SSD's IoU crop (torchvision's ``RandomIoUCrop``, as ``self.crop``), passing images without boxes through
    unchanged, as the authors' crop does. torchvision's needs a box centre inside the crop, so with no boxes
    it re-samples until it happens to draw its "keep the whole image" option: correct but slow (tens of
    ms, sometimes far more)."""

    def __init__(self, **crop_options: Any) -> None:
        self.crop = T.RandomIoUCrop(**crop_options)

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        return (image, target) if target["boxes"].shape[0] == 0 else self.crop(image, target)


def _labels_and_flags(inputs: Any) -> tuple[torch.Tensor, ...]:
    """What ``SanitizeBoundingBoxes`` must filter along with the boxes; its default finds only ``labels``,
    which would leave ``difficult`` longer than ``boxes`` after a crop."""
    target = inputs[1] if isinstance(inputs, (tuple, list)) else inputs
    return tuple(target[key] for key in ("labels", "difficult") if key in target)


def _drop_boxes_without_area(image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The authors' rule after their crop: an object stays while its box has any area (torchvision's
    ``SanitizeBoundingBoxes`` also drops boxes under 1 px). The crop zeroes the boxes whose centre it cut."""
    boxes = target["boxes"]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    target = {**target, "boxes": tv_tensors.wrap(boxes[keep], like=boxes)}
    for key in ("labels", "difficult"):
        if key in target:
            target[key] = target[key][keep]
    return image, target


def _to_unit_range(image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """0..255 floats to the [0, 1] the detector's transform normalises (values outside stay outside)."""
    return tv_tensors.wrap(image.as_subclass(torch.Tensor) / 255, like=image), target


def detection_transforms(
    train: bool,
    size: int = 320,
    fill: Sequence[int] = (123, 117, 104),
    augment: bool = True,
    pipeline: str = "authors",
) -> T.Compose:
    """The SSD augmentation of ``pipeline`` (training), or just the float conversion (evaluation).

    Training: photometric distortion, zoom-out (canvas filled with ``fill``, the authors' mean in 0..255),
    IoU crop, flip, resize to ``size x size``, boxes the crop cut away dropped; see the module doc for how
    the two pipelines differ. Evaluation keeps the original size: torchvision's SSD resizes internally
    (bilinear, not antialiased, like the authors' test resize) and maps its boxes back to the input's
    coordinates. ``augment=False`` trains with flips only: for quick runs, where the full augmentation's
    harder samples (objects shrunk up to 4x, crops) slow convergence more than they help.
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline {pipeline!r}: choose one of {', '.join(PIPELINES)}.")
    to_float = T.ToDtype(torch.float32, scale=True)  # last, so fill and colour jitter work in uint8
    if not train:
        return T.Compose([to_float])
    antialias = pipeline == "torchvision"
    if not augment:
        return T.Compose([T.RandomHorizontalFlip(), T.Resize((size, size), antialias=antialias), to_float])
    if pipeline == "torchvision":
        return T.Compose([
            T.RandomPhotometricDistort(p=0.5),
            T.RandomZoomOut(fill=tuple(fill), side_range=(1.0, 4.0), p=0.5),
            _IoUCropIfBoxes(),
            T.RandomHorizontalFlip(),
            T.Resize((size, size), antialias=True),
            T.SanitizeBoundingBoxes(labels_getter=_labels_and_flags),
            to_float,
        ])  # fmt: skip
    return T.Compose([
        AuthorsPhotometricDistort(),  # float 0..255 from here on, as their ConvertFromInts
        T.RandomZoomOut(fill=tuple(float(v) for v in fill), side_range=(1.0, 4.0), p=0.5),
        _IoUCropIfBoxes(sampler_options=AUTHORS_IOU_FLOORS, trials=AUTHORS_CROP_TRIES),
        T.RandomHorizontalFlip(),
        T.Resize((size, size), antialias=False),
        _drop_boxes_without_area,
        _to_unit_range,
    ])  # fmt: skip


class AuthorsImageTransform(GeneralizedRCNNTransform):
    """The detector's own preprocessing (torchvision ``SSD``'s ``transform``) as the authors' test pipeline does it:
    the image as uint8 resized by OpenCV (``cv2.resize``, bilinear, fixed point, the result kept uint8), then
    minus their mean and divided by their std in 0..255 units, in float32 (their ``Resize``, ``SubtractMeans``).
    torchvision's normalises floats first and resizes them after, which differs by up to about 0.8 grey levels
    on ordinary photos.

    Images arrive as torchvision's detectors take them, floats in [0, 1] (a decoded uint8 image / 255, which
    this turns back into the same uint8 exactly). In training the images are already at the input size and
    hold unclipped floats (their augmentation's), which are normalised as they are, without the uint8 step.
    Needs OpenCV (``pip install 'mobilenext[detection]'``) for evaluation and prediction.
    """

    def __init__(self, size: int, image_mean: Sequence[float], image_std: Sequence[float]) -> None:
        super().__init__(size, size, list(image_mean), list(image_std), size_divisible=1, fixed_size=(size, size))
        # theirs: np.array([123, 117, 104], float32) and np.array((0.229 * 255, ...), float32)
        self.mean_255 = torch.from_numpy(np.array([v * 255 for v in image_mean], dtype=np.float32)).view(3, 1, 1)
        self.std_255 = torch.from_numpy(np.array([v * 255 for v in image_std], dtype=np.float32)).view(3, 1, 1)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image  # after the resize, in :meth:`resize`, as theirs

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):
        if self.training:
            image, target = super().resize(image, target)  # the training pipeline already resized it
            return self._subtract_mean(image * 255), target
        cv2 = require("cv2", "detection")
        height, width = image.shape[-2:]
        pixels = (image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        resized = cv2.resize(np.ascontiguousarray(pixels), self.fixed_size[::-1])
        resized = torch.from_numpy(resized.astype(np.float32)).permute(2, 0, 1).to(image.device)
        if target is not None:
            target["boxes"] = resize_boxes(target["boxes"], (height, width), resized.shape[-2:])
        return self._subtract_mean(resized), target

    def _subtract_mean(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean_255.to(image.device)) / self.std_255.to(image.device)
