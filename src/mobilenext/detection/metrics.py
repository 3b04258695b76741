"""Detection metrics: Pascal VOC mAP@0.5 (VOC2010+ area and VOC07 11-point) and COCO AP via pycocotools.

Inputs follow torchvision's detection convention, one dict per image:

- detections ``{"boxes": [N, 4] xyxy pixels, "scores": [N], "labels": [N]}`` (what ``SSD`` returns in eval mode),
- targets ``{"boxes": [M, 4] xyxy, "labels": [M], "difficult": [M] bool (optional)}``; VOC "difficult" and
  COCO "iscrowd" (read when "difficult" is absent) both mean "ignored by the metric".

Labels run 1..K; 0 is the background and never appears.

The VOC numbers are the authors' evaluator's (``ssd/data/datasets/evaluation/voc/eval_detection_voc.py`` of
houqb/ssdlite-pytorch-mobilenext, ChainerCV's port of the devkit), so that ``map50_voc07`` is the metric of
their 72.6 / 71.8: boxes in the devkit's integer-pixel convention (x2 and y2 plus 1 before any IoU: a box from
pixel 0 to 9 is 10 wide), detections taken by ``argsort()[::-1]`` of their scores, a true positive when the IoU
with the ground truth it overlaps most is ``>= 0.5``, and the 11 recall levels of ``np.arange(0, 1.1, 0.1)``.
A class with no (non-difficult) ground truth has no recall and so no AP; it is left out of the mean and of
``ap50_per_class`` (theirs: NaN, which their ``nanmean`` skips). ``map50_continuous`` is the area mAP in
continuous coordinates (torchvision's and COCO's: area ``(x2 - x1) * (y2 - y1)``), under its own name.
COCO numbers come from pycocotools' ``COCOeval`` itself.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, require

__all__ = [
    "METRICS",
    "VOC07_RECALL_LEVELS",
    "DetectionEvaluator",
    "average_precision_per_class",
    "box_iou",
    "coco_metrics",
    "match_image",
    "precision_recall",
    "voc_ap",
]

METRICS = ("voc", "coco")
VOC_IOU_THRESHOLD = 0.5

# COCOeval.stats index -> our key (the first six lines of its summary: AP over all areas, then by area).
_COCO_STATS = {"ap": 0, "ap50": 1, "ap75": 2, "ap_small": 3, "ap_medium": 4, "ap_large": 5}

_Arrays = dict[str, np.ndarray]  # one image's detections or targets, validated


# ---------------------------------------------------------------------------------------------------------
# Input checking: everything is turned into small CPU numpy arrays once, in update().


def _numpy(value: Any, dtype: type, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a tensor of numbers, got {type(value).__name__}.") from None


def _boxes(value: Any, what: str) -> np.ndarray:
    boxes = _numpy(value, np.float32, what)
    if boxes.size == 0:  # torch.zeros(0) is a common way to write "no boxes"
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ConfigError(f"{what} must have shape [N, 4] (x1, y1, x2, y2), got {list(boxes.shape)}.")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ConfigError(f"{what} must be xyxy with x2 >= x1 and y2 >= y1; convert xywh boxes first.")
    return boxes


def _vector(value: Any, dtype: type, length: int, what: str) -> np.ndarray:
    array = _numpy(value, dtype, what).reshape(-1)
    if len(array) != length:
        raise ConfigError(f"{what} has {len(array)} entries but there are {length} boxes.")
    return array


def _labels(value: Any, length: int, num_classes: int, what: str) -> np.ndarray:
    labels = _vector(value, np.int64, length, what)
    bad = labels[(labels < 1) | (labels > num_classes)]
    if len(bad):
        raise ConfigError(
            f"{what} holds label {int(bad[0])}, outside 1..{num_classes} (0 is the background and "
            f"never a class; set num_classes to the number of object classes)."
        )
    return labels


def _field(mapping: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise ConfigError(f"{what} must be a dict with a {key!r} entry (torchvision's detection format).")
    return mapping[key]


def _image_arrays(
    detection: Mapping[str, Any], target: Mapping[str, Any], num_classes: int, where: str
) -> tuple[_Arrays, _Arrays]:
    """One image's detection and target as validated numpy arrays, keeping only what the metrics read."""
    det_what, gt_what = f"the detections of {where}", f"the target of {where}"
    det_boxes = _boxes(_field(detection, "boxes", det_what), f"{det_what}: 'boxes'")
    n = len(det_boxes)
    det = {
        "boxes": det_boxes,
        "scores": _vector(_field(detection, "scores", det_what), np.float32, n, f"{det_what}: 'scores'"),
        "labels": _labels(_field(detection, "labels", det_what), n, num_classes, f"{det_what}: 'labels'"),
    }
    gt_boxes = _boxes(_field(target, "boxes", gt_what), f"{gt_what}: 'boxes'")
    m = len(gt_boxes)
    ignored = target.get("difficult", target.get("iscrowd"))
    gt = {
        "boxes": gt_boxes,
        "labels": _labels(_field(target, "labels", gt_what), m, num_classes, f"{gt_what}: 'labels'"),
        "difficult": np.zeros(m, bool) if ignored is None else _vector(ignored, bool, m, f"{gt_what}: 'difficult'"),
    }
    return det, gt


def _all_image_arrays(
    detections: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]], num_classes: int
) -> list[tuple[_Arrays, _Arrays]]:
    if len(detections) != len(targets):
        raise ConfigError(
            f"got detections for {len(detections)} images but targets for {len(targets)}; "
            "pass one detection dict and one target dict per image, in the same order."
        )
    return [_image_arrays(d, t, num_classes, f"image {i}") for i, (d, t) in enumerate(zip(detections, targets))]


# ---------------------------------------------------------------------------------------------------------
# Pascal VOC


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray, pixel: bool = False) -> np.ndarray:
    """IoU matrix [N, M] of xyxy boxes, in their own dtype. ``pixel``: the VOC devkit's integer-pixel convention,
    as the authors' evaluator applies it (x2 and y2 plus 1, so that a box from pixel 0 to 9 is 10 wide);
    otherwise continuous coordinates (area = (x2 - x1) * (y2 - y1))."""
    a, b = (np.array(x, dtype=np.result_type(np.asarray(x).dtype, np.float32)).reshape(-1, 4) for x in (boxes1, boxes2))
    if pixel:
        a[:, 2:] += 1
        b[:, 2:] += 1
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(bottom_right - top_left, axis=2) * (top_left < bottom_right).all(axis=2)
    union = np.prod(a[:, 2:] - a[:, :2], axis=1)[:, None] + np.prod(b[:, 2:] - b[:, :2], axis=1) - inter
    # Two zero-area boxes have no overlap to speak of; this also avoids 0 / 0.
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _descending(scores: np.ndarray) -> np.ndarray:
    """The order in which the authors' evaluator takes detections: numpy's ``argsort`` reversed, so that of equal
    scores the later one comes first (it decides which of two tied detections finds the ground truth)."""
    return np.asarray(scores).reshape(-1).argsort()[::-1]


def match_image(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    iou_threshold: float = VOC_IOU_THRESHOLD,
    pixel: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The devkit's greedy matching for one class in one image: (tp, fp) flags in the detections' order (a
    detection that is neither was on a difficult ground truth and is ignored).

    Detections are visited by descending score (:func:`_descending`); each looks only at the ground truth it
    overlaps most (the first of equal overlaps), and counts when that IoU is at least ``iou_threshold``. That one
    being difficult makes the detection neither TP nor FP; being matched already makes it a FP even when another,
    free ground truth also overlaps it enough (the devkit does not look further).
    """
    scores = np.asarray(det_scores).reshape(-1)
    tp, fp = np.zeros(len(scores), bool), np.zeros(len(scores), bool)
    if len(gt_boxes) == 0:
        fp[:] = True
        return tp, fp
    iou = box_iou(det_boxes, gt_boxes, pixel)
    best = iou.argmax(axis=1).tolist()
    found = (iou.max(axis=1) >= iou_threshold).tolist()
    difficult = np.asarray(gt_difficult, bool).tolist()
    taken = [False] * len(gt_boxes)
    for d in _descending(scores).tolist():
        j = best[d]
        if not found[d]:
            fp[d] = True
        elif difficult[j]:
            continue
        elif taken[j]:
            fp[d] = True
        else:
            tp[d] = taken[j] = True
    return tp, fp


def precision_recall(
    scores: np.ndarray, tp: np.ndarray, fp: np.ndarray, num_positives: int
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each detection of one class, taken by descending score as the authors'
    evaluator takes them (:func:`_descending`, over the images' detections in image order, each image's by
    descending score). A detection on a difficult ground truth (neither TP nor FP) repeats the previous point;
    before the first TP or FP the precision is 0 (theirs: NaN, read as 0)."""
    order = _descending(scores)
    tp_sum = np.cumsum(np.asarray(tp, bool)[order], dtype=np.float64)
    fp_sum = np.cumsum(np.asarray(fp, bool)[order], dtype=np.float64)
    counted = tp_sum + fp_sum
    precision = np.divide(tp_sum, counted, out=np.zeros_like(tp_sum), where=counted > 0)
    return tp_sum / num_positives, precision


# The authors' 11 recall levels of the VOC2007 metric (also py-faster-rcnn's): np.arange puts 0.3, 0.6 and 0.7 a
# hair above the exact tenths, so a recall of exactly 3/10 does not reach the 0.3 level.
VOC07_RECALL_LEVELS = np.arange(0.0, 1.1, 0.1)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a recall-ordered precision/recall curve, as the authors' evaluator computes it.

    ``use_07_metric``: VOC2007's mean over :data:`VOC07_RECALL_LEVELS` of the best precision at recall >= the
    level (0 where none). Otherwise VOC2010+'s area under the precision envelope (precision made monotone by
    taking the best precision at any higher recall), summed over the recall steps.
    """
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.nan_to_num(np.asarray(precision, dtype=np.float64).reshape(-1))
    if use_07_metric:
        return float(sum(precision[recall >= t].max(initial=0.0) / 11 for t in VOC07_RECALL_LEVELS))
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def average_precision_per_class(
    detections: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    num_classes: int,
    iou_threshold: float = VOC_IOU_THRESHOLD,
    pixel: bool = True,
) -> dict[int, tuple[float, float]]:
    """VOC AP of each class that has non-difficult ground truth: ``{label: (area AP, 11-point AP)}``, the authors'
    evaluator's numbers (``pixel=False``: the same in continuous coordinates).

    ``detections`` / ``targets``: one dict per image in torchvision's format (tensors or numpy arrays).
    """
    images = _all_image_arrays(detections, targets, num_classes)
    positives = np.zeros(num_classes + 1, np.int64)
    outcomes: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(num_classes + 1)]  # (scores, tp, fp)
    for det, gt in images:
        positives += np.bincount(gt["labels"][~gt["difficult"]], minlength=num_classes + 1)
        # Only the classes this image detected need matching; the others add ground truth only.
        for label in np.unique(det["labels"]).tolist():
            d, g = det["labels"] == label, gt["labels"] == label
            scores = det["scores"][d]
            tp, fp = match_image(det["boxes"][d], scores, gt["boxes"][g], gt["difficult"][g], iou_threshold, pixel)
            order = _descending(scores)  # each image's detections enter the class's list in this order
            outcomes[label].append((scores[order], tp[order], fp[order]))
    result = {}
    for label in range(1, num_classes + 1):
        if positives[label] == 0:
            continue
        scores, tp, fp = (np.concatenate(parts) for parts in zip(*outcomes[label])) if outcomes[label] else (
            np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, bool))  # fmt: skip
        recall, precision = precision_recall(scores, tp, fp, positives[label])
        result[label] = (voc_ap(recall, precision), voc_ap(recall, precision, use_07_metric=True))
    return result


# ---------------------------------------------------------------------------------------------------------
# COCO (pycocotools)


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)


def _coco_datasets(images: list[tuple[_Arrays, _Arrays]], num_classes: int) -> tuple[dict, dict]:
    """In-memory COCO ground truth and results. Ids start at 1: COCOeval reads id 0 as "unmatched"."""
    meta = {
        "images": [{"id": i + 1} for i in range(len(images))],
        "categories": [{"id": k} for k in range(1, num_classes + 1)],
    }
    gt_anns: list[dict[str, Any]] = []
    dt_anns: list[dict[str, Any]] = []
    for image_id, (det, gt) in enumerate(images, start=1):
        for box, label, crowd in zip(_xywh(gt["boxes"]).tolist(), gt["labels"].tolist(), gt["difficult"].tolist()):
            # Ignored ground truth becomes a crowd region: COCOeval neither needs it found nor counts
            # detections on it as false positives.
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(crowd),
                }
            )
        for box, label, score in zip(_xywh(det["boxes"]).tolist(), det["labels"].tolist(), det["scores"].tolist()):
            dt_anns.append(
                {
                    "id": len(dt_anns) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "score": score,
                    "iscrowd": 0,
                }
            )
    return {**meta, "annotations": gt_anns}, {**meta, "annotations": dt_anns}


def _coco(dataset: dict) -> Any:
    coco = require("pycocotools.coco", "detection").COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _undefined_as_nan(value: float) -> float:
    # COCOeval writes -1 where nothing defines the number (e.g. AP_small with no small objects).
    return float("nan") if value < 0 else float(value)


def coco_metrics(
    detections: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]], num_classes: int
) -> dict[str, Any]:
    """COCO box AP from pycocotools' ``COCOeval`` on in-memory COCO structures built from the arrays.

    Returns ``ap`` (IoU 0.5:0.95), ``ap50``, ``ap75``, ``ap_small`` / ``ap_medium`` / ``ap_large`` (NaN where
    no ground truth of that size exists; COCOeval says -1), ``ap50_per_class`` ``{label: AP@0.5}`` for classes
    with ground truth, and ``coco_summary``, COCOeval's printed table. Area is the box area, not a mask's.
    """
    cocoeval = require("pycocotools.cocoeval", "detection")
    images = _all_image_arrays(detections, targets, num_classes)
    gt_data, dt_data = _coco_datasets(images, num_classes)
    evaluator = cocoeval.COCOeval(_coco(gt_data), _coco(dt_data), iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    result: dict[str, Any] = {key: _undefined_as_nan(evaluator.stats[i]) for key, i in _COCO_STATS.items()}
    # precision[T, R, K, A, M]: IoU 0.5 is T=0, all areas A=0, maxDets=100 M=-1; -1 marks "no ground truth".
    precision = evaluator.eval["precision"][0, :, :, 0, -1]
    per_class = {}
    for k, label in enumerate(evaluator.params.catIds):
        curve = precision[:, k]
        if (curve > -1).any():
            per_class[int(label)] = float(curve[curve > -1].mean())
    result["ap50_per_class"] = per_class
    result["coco_summary"] = summary.getvalue()
    return result


# ---------------------------------------------------------------------------------------------------------


class DetectionEvaluator:
    """Accumulates detections and targets over batches, then computes VOC or COCO box metrics.

    ``metric="voc"`` gives the authors' evaluator's ``map50`` (VOC2010+ area mAP@0.5) and ``map50_voc07``
    (11-point, the metric of their 72.6 / 71.8), ``ap50_per_class`` ``{class name: area AP}``, and
    ``map50_continuous`` (the area mAP in continuous coordinates, without the pixel "+1"). ``metric="coco"``
    gives pycocotools' ``ap``, ``ap50``, ``ap75``, ``ap_small``, ``ap_medium``, ``ap_large``, ``coco_summary``
    text, ``map50`` (= ``ap50``) and ``ap50_per_class``. All numbers
    are floats in [0, 1]; classes without (non-difficult) ground truth are left out of means and per-class dicts.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, metric: str = "voc") -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(
                f"num_classes must be the number of object classes (>= 1, without the background), got {num_classes!r}."
            )
        if metric not in METRICS:
            raise ConfigError(f"unknown detection metric {metric!r}; choose one of {', '.join(METRICS)}.")
        names = [str(k) for k in range(1, num_classes + 1)] if class_names is None else [str(n) for n in class_names]
        if len(names) != num_classes or len(set(names)) != num_classes:
            raise ConfigError(
                f"class_names must list {num_classes} distinct names (one per class, no background), "
                f"got {len(names)}{' with repeats' if len(set(names)) != len(names) else ''}."
            )
        if metric == "coco":  # fail now, not after a whole evaluation pass
            require("pycocotools.coco", "detection")
        self.num_classes, self.class_names, self.metric = num_classes, names, metric
        self._images: list[tuple[_Arrays, _Arrays]] = []

    @property
    def num_images(self) -> int:
        return len(self._images)

    def reset(self) -> None:
        self._images = []

    def update(self, detections: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
        """Add a batch: one detection dict and one target dict per image (tensors on any device).

        The whole batch is checked before any of it is kept, so a rejected batch leaves the evaluator as it was.
        """
        self._images.extend(_all_image_arrays(detections, targets, self.num_classes))

    def compute(self) -> dict[str, Any]:
        """The metrics over everything added since construction or the last :meth:`reset`."""
        if not any((~gt["difficult"]).any() for _, gt in self._images):
            raise ConfigError(
                f"no ground-truth boxes (other than difficult ones) among the {self.num_images} "
                "images given, so AP is undefined; pass targets with boxes to update() first."
            )
        detections, targets = [d for d, _ in self._images], [g for _, g in self._images]
        if self.metric == "coco":
            result = coco_metrics(detections, targets, self.num_classes)
            result["map50"] = result["ap50"]
            per_class = result["ap50_per_class"]
        else:
            aps = average_precision_per_class(detections, targets, self.num_classes)
            continuous = average_precision_per_class(detections, targets, self.num_classes, pixel=False)
            result = {
                "map50": float(np.mean([area for area, _ in aps.values()])),
                "map50_voc07": float(np.mean([ap07 for _, ap07 in aps.values()])),
                "map50_continuous": float(np.mean([area for area, _ in continuous.values()])),
            }
            per_class = {label: area for label, (area, _) in aps.items()}
        result["ap50_per_class"] = {self.class_names[label - 1]: ap for label, ap in per_class.items()}
        return result
