"""The detector as an ONNX graph: network and box decoding inside, score threshold and NMS outside.

What the graph does: normalise a batch of ``size x size`` RGB images in [0, 1], run the backbone and the
SSDLite head, decode the box regressions against the default boxes (torchvision's ``BoxCoder``, weights
10, 10, 5, 5) and score the classes as the detector does (softmax without the background column, or the
COCO detector's per-class sigmoids). Outputs, for N images, A default boxes and K object classes:

- ``boxes``  [N, A, 4]: x1, y1, x2, y2 in pixels of the ``size x size`` input,
- ``scores`` [N, A, K]: column k scores class k + 1 (the checkpoint's class k, counted from 0).

Post-processing, left to the deployment runtime because every runtime has its own fast NMS, is the authors':
per image, every (box, class) pair scoring above ``score_thresh`` (0.01 for VOC mAP, 0.05 for COCO, ~0.3 for
display), per-class non-maximum suppression at IoU ``nms_thresh`` (0.45 VOC, 0.5 COCO), the
``detections_per_img`` (100) best over all classes; finally scale the boxes from the ``size x size`` input
back to the original image (not clipped to it). The detector's own values travel in the file's metadata
(:func:`read_onnx_settings`); :func:`postprocess` is that recipe in PyTorch, and the tests check that graph +
:func:`postprocess` reproduce the detector's own detections.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList

from .._io import atomic_path
from ..deploy.export import exporter_errors
from ..errors import require
from .model import select_detections
from .settings import PostProcessing

__all__ = ["DetectorGraph", "export_detector_onnx", "postprocess", "read_onnx_settings"]


class DetectorGraph(nn.Module):
    """An SSD's network on a fixed input size, returning decoded ``(boxes, scores)`` (see the module doc)."""

    def __init__(self, ssd: nn.Module, size: int) -> None:
        super().__init__()
        self.backbone, self.head, self.box_coder, self.size = ssd.backbone, ssd.head, ssd.box_coder, size
        self.class_scores = ssd.class_scores
        self.register_buffer("mean", torch.tensor(ssd.transform.image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(ssd.transform.image_std).view(1, 3, 1, 1))
        with torch.no_grad():  # the default boxes depend only on the input size: computed once, stored
            blank = torch.zeros(1, 3, size, size)
            maps = list(self.backbone.eval()(blank).values())
            anchors = ssd.anchor_generator(ImageList(blank, [(size, size)]), maps)[0]
        self.register_buffer("anchors", anchors)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        head = self.head(list(self.backbone((images - self.mean) / self.std).values()))
        n, a = head["bbox_regression"].shape[:2]
        anchors = self.anchors.expand(n, -1, -1).reshape(-1, 4)
        boxes = self.box_coder.decode_single(head["bbox_regression"].reshape(-1, 4), anchors).view(n, a, 4)
        return boxes, self.class_scores(head["cls_logits"])


def postprocess(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    size: int,
    original_size: tuple[int, int] | None = None,
    *,
    settings: PostProcessing,
) -> dict[str, torch.Tensor]:
    """One image's ``boxes`` [A, 4] and ``scores`` [A, K] from the graph to detections, as the detector's own
    with its ``settings`` (:meth:`PostProcessing.of` a detector, or :func:`read_onnx_settings` of its file)."""
    found = select_detections(boxes, scores, settings.score_thresh, settings.nms_thresh, settings.detections_per_img)
    if original_size is not None:
        height, width = original_size
        found["boxes"] = found["boxes"] * torch.tensor([width / size, height / size, width / size, height / size])
    return found


def read_onnx_settings(path: str | Path) -> PostProcessing:
    """The post-processing settings :func:`export_detector_onnx` stored in a file's metadata."""
    require("onnx", "onnx")
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return PostProcessing(**{k: json.loads(props[k]) for k in PostProcessing.__dataclass_fields__})


def export_detector_onnx(
    ssd: nn.Module,
    path: str | Path,
    size: int,
    verify: torch.Tensor | None = None,
    overwrite: bool = True,
    classes: list[str] | None = None,
    inputs: Sequence[str | Path] = (),
) -> float:
    """Write ``DetectorGraph(ssd)`` to ``path`` (dynamic batch, checked by ``onnx.checker``; the detector's
    post-processing settings and ``classes`` in its metadata) and return the largest difference of its outputs
    in onnxruntime against PyTorch on ``verify`` (``size x size`` images)."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module, "onnx")
    import onnx
    import onnxruntime as ort

    graph = DetectorGraph(ssd.eval(), size).eval()
    verify = verify if verify is not None else torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    path = Path(path)
    with atomic_path(path, overwrite, inputs) as tmp, exporter_errors("onnx", path.parent):
        torch.onnx.export(
            graph,
            (verify[:2].contiguous(),),
            str(tmp),
            dynamo=True,
            input_names=["images"],
            output_names=["boxes", "scores"],
            dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},),
            external_data=False,
            verbose=False,
        )
        _write_metadata(tmp, {**PostProcessing.of(ssd).to_dict(), "classes": classes or []})
        onnx.checker.check_model(str(tmp), full_check=True)
    with torch.no_grad():
        expected = graph(verify)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": verify.numpy()})
    return max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got))


def _write_metadata(path: Path, values: dict) -> None:
    """Values (as JSON) in the ONNX file's ``metadata_props``, which every runtime can read back."""
    import onnx

    model = onnx.load(str(path))
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))
