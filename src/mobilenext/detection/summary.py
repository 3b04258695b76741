"""``mobilenext detect models``: the authors' four SSDLite-320 detectors, measured, beside their published figures."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from ..models.complexity import count_madds, count_params
from .model import AUTHORS_SIZE, create_detector

__all__ = ["AUTHORS_DETECTORS", "summarize_detectors"]


class AuthorsDetector(NamedTuple):
    name: str
    config: str  # their configs: voc (VOC07+12, 21 outputs, softmax) or coco (81 outputs, focal)
    params: int | None  # their code's count, from the state dicts it builds (None: no such dict published)
    reported: str  # what their README reports (the paper's text gives only VOC's +0.9 mAP)


AUTHORS_DETECTORS = (
    AuthorsDetector("ssdlite320_mobilenext_100", "voc", 3_476_308, "72.6 mAP"),
    AuthorsDetector("ssdlite320_mobilenetv2_100", "voc", 3_425_988, "71.8 mAP"),
    AuthorsDetector("ssdlite320_mobilenext_100", "coco", 4_539_418, "23.3 AP; 4.5M params, 0.8B MAdds"),
    AuthorsDetector("ssdlite320_mobilenetv2_100", "coco", None, "22.3 AP; 4.5M params, 0.8B MAdds"),
)
_OUTPUTS = {"voc": (21, "softmax"), "coco": (81, "focal")}


class _Network(nn.Module):
    """Backbone and box head: what the MAdds count (decoding and NMS are not convolutions)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = detector.backbone, detector.head

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(list(self.backbone(images).values()))


def summarize_detectors() -> list[dict[str, Any]]:
    """One row per detector of the authors: our params and MAdds at 320 px beside their code's and README's."""
    rows = []
    for spec in AUTHORS_DETECTORS:
        outputs, loss = _OUTPUTS[spec.config]
        detector = create_detector(spec.name, outputs, boxes=spec.config, loss=loss)
        params = count_params(detector)
        rows.append({
            "detector": spec.name,
            "config": spec.config,
            "outputs": outputs,
            "params": params,
            "authors_params": spec.params,
            "same": "-" if spec.params is None else "yes" if params == spec.params else "NO",
            "madds_m": round(count_madds(_Network(detector), (3, AUTHORS_SIZE, AUTHORS_SIZE)) / 1e6, 1),
            "authors_readme": spec.reported,
        })  # fmt: skip
    return rows
