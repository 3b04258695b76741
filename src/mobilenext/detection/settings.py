"""A detector's test-time settings, with one owner: normalisation, score threshold, NMS, detections per image.

The authors' values (``ssd/config/defaults.py`` and their configs) depend on the loss their config trains:
the VOC configs (softmax) keep boxes scoring above 0.01 with NMS at IoU 0.45, the COCO configs (sigmoid
focal) above 0.05 with NMS at 0.5; both keep the 100 best per image and consider every prior (no per-class
top-k before NMS). Whatever a run, a checkpoint or a command leaves unset comes from :func:`post_processing`:
``detect train --loss focal`` without a recipe gets COCO's thresholds, not VOC's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError

__all__ = [
    "AUTHORS_MEAN",
    "AUTHORS_STD",
    "DISPLAY_SCORE_THRESH",
    "LOSSES",
    "NORMALIZATIONS",
    "PostProcessing",
    "normalization",
    "ssd_keywords",
    "post_processing",
]

# softmax: torchvision's SSD loss (cross-entropy with 3:1 hard-negative mining), the authors' VOC loss;
# focal: the authors' COCO loss and scoring (per-class sigmoids).
LOSSES = ("softmax", "focal")

# The authors' normalisation: images in 0..255 minus PIXEL_MEAN (123, 117, 104), divided by ImageNet's std x 255,
# i.e. these on 0..1. "imagenet": timm's mean and std.
AUTHORS_MEAN = (123 / 255, 117 / 255, 104 / 255)
AUTHORS_STD = (0.229, 0.224, 0.225)
_NORMALIZATIONS = {"authors": (AUTHORS_MEAN, AUTHORS_STD), "imagenet": ((0.485, 0.456, 0.406), AUTHORS_STD)}
NORMALIZATIONS = tuple(_NORMALIZATIONS)

# `mobilenext detect predict` draws what a person wants to see, not the long tail that mAP needs.
DISPLAY_SCORE_THRESH = 0.3


@dataclass(frozen=True)
class PostProcessing:
    """Post-processing: every (box, class) pair scoring above ``score_thresh`` is a candidate, per-class NMS at
    IoU ``nms_thresh``, the ``detections_per_img`` best kept."""

    score_thresh: float
    nms_thresh: float
    detections_per_img: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, detector: Any) -> PostProcessing:
        """The settings a detector (torchvision ``SSD``) post-processes with."""
        return cls(detector.score_thresh, detector.nms_thresh, detector.detections_per_img)


_AUTHORS_TEST = {
    "softmax": PostProcessing(score_thresh=0.01, nms_thresh=0.45, detections_per_img=100),  # their VOC configs
    "focal": PostProcessing(score_thresh=0.05, nms_thresh=0.5, detections_per_img=100),  # their COCO configs
}


def post_processing(
    loss: str = "softmax",
    score_thresh: float | None = None,
    nms_thresh: float | None = None,
    detections_per_img: int | None = None,
) -> PostProcessing:
    """The post-processing of a detector trained with ``loss``: the authors' values of that loss's configs,
    except what is given (``None``: unset)."""
    if loss not in LOSSES:
        raise ConfigError(f"loss {loss!r}: choose one of {', '.join(LOSSES)}.")
    given = {"score_thresh": score_thresh, "nms_thresh": nms_thresh, "detections_per_img": detections_per_img}
    defaults = _AUTHORS_TEST[loss].to_dict()
    return PostProcessing(**{k: v if given[k] is None else given[k] for k, v in defaults.items()})


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) on 0..1 of a normalisation name."""
    if name not in _NORMALIZATIONS:
        raise ConfigError(f"normalize {name!r}: choose one of {', '.join(NORMALIZATIONS)}.")
    return _NORMALIZATIONS[name]


def ssd_keywords(settings: dict[str, Any]) -> dict[str, Any]:
    """torchvision ``SSD`` keywords from a detection run's settings (``loss``, ``normalize`` and the test
    settings, any of them unset): its normalisation and post-processing."""
    mean, std = normalization(settings.get("normalize") or "authors")
    given = {k: settings.get(k) for k in ("score_thresh", "nms_thresh", "detections_per_img")}
    test = post_processing(settings.get("loss") or "softmax", **given)
    return {"image_mean": list(mean), "image_std": list(std), **test.to_dict()}
