"""Detection metrics: VOC AP against hand-computed cases and the authors' evaluator's formula (computed here from
its definition); COCO via pycocotools."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from mobilenext.detection.metrics import (
    DetectionEvaluator,
    average_precision_per_class,
    match_image,
    precision_recall,
    voc_ap,
)
from mobilenext.errors import ConfigError, MissingDependencyError


def det(boxes, scores, labels):
    return {
        "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.as_tensor(scores, dtype=torch.float32),
        "labels": torch.as_tensor(labels, dtype=torch.int64),
    }


def gt(boxes, labels, difficult=None):
    target = {
        "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.as_tensor(labels, dtype=torch.int64),
    }
    if difficult is not None:
        target["difficult"] = torch.tensor(difficult, dtype=torch.bool)
    return target


# ---------------------------------------------------------------------------------------------------------
# The hand-computed case. Classes: 1 cat, 2 dog, 3 bird (never in the ground truth).
#
# image 0: G1 cat [0,0,10,10]; G2 cat [20,20,30,30] difficult
# image 1: G3 cat [0,0,20,20];  G4 dog [40,40,50,50]
#
# cat detections, by score:
#   0.9  [0,0,10,10]  image 0  IoU(G1) = 1                         -> TP (G1 taken)
#   0.8  [1,0,10,10]  image 0  IoU(G1) = 110/121 = 0.91, G1 taken  -> FP (duplicate; pixel boxes: x2, y2 + 1)
#   0.7  [20,20,30,30] image 0 best overlap is G2, difficult      -> ignored
#   0.6  [0,0,20,8]   image 1  IoU(G3) = 189/441 = 0.43 < 0.5      -> FP (low IoU)
#   0.5  [0,0,20,20]  image 1  IoU(G3) = 1                         -> TP
#   positives: G1, G3 = 2 (G2 is difficult).
#   rows: TP FP (ignored) FP TP -> recall 1/2 1/2 1/2 1/2 1, precision 1 1/2 1/2 1/3 1/2
#   11-point: levels 0..0.5 (6 of them) see precision 1, levels 0.6..1 (5) see 1/2 -> (6 + 5/2) / 11 = 17/22
#   area: envelope 1 up to recall 1/2, then 1/2 up to 1 -> 1/2 * 1 + 1/2 * 1/2 = 3/4
# dog detections:
#   0.95 [0,0,20,20]   image 1  a cat box called dog; IoU(G4) = 0   -> FP (wrong class)
#   0.3  [40,40,50,50] image 1  IoU(G4) = 1                        -> TP
#   positives 1: recall 0 1, precision 0 1/2 -> 11-point: every level sees 1/2 -> 1/2; area: 1 * 1/2 = 1/2
# bird: one detection, no ground truth -> no AP, left out of the mean.
# mAP area = (3/4 + 1/2) / 2 = 5/8; mAP 11-point = (17/22 + 1/2) / 2 = 7/11.

HAND_DETECTIONS = [
    det([[20, 20, 30, 30], [1, 0, 10, 10], [0, 0, 10, 10]], [0.7, 0.8, 0.9], [1, 1, 1]),
    det(
        [[0, 0, 20, 20], [0, 0, 20, 8], [40, 40, 50, 50], [0, 0, 20, 20], [5, 5, 9, 9]],
        [0.95, 0.6, 0.3, 0.5, 0.4],
        [2, 1, 2, 1, 3],
    ),
]
HAND_TARGETS = [
    gt([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [False, True]),
    gt([[0, 0, 20, 20], [40, 40, 50, 50]], [1, 2]),
]


def test_hand_computed_voc_case_over_two_batches():
    evaluator = DetectionEvaluator(3, class_names=["cat", "dog", "bird"], metric="voc")
    evaluator.update(HAND_DETECTIONS[:1], HAND_TARGETS[:1])
    evaluator.update(HAND_DETECTIONS[1:], HAND_TARGETS[1:])
    result = evaluator.compute()
    assert evaluator.num_images == 2
    assert result["ap50_per_class"] == pytest.approx({"cat": 3 / 4, "dog": 1 / 2})
    assert result["map50"] == pytest.approx(5 / 8)
    assert result["map50_voc07"] == pytest.approx(7 / 11)
    assert average_precision_per_class(HAND_DETECTIONS, HAND_TARGETS, 3) == {
        1: pytest.approx((3 / 4, 17 / 22)),
        2: pytest.approx((1 / 2, 1 / 2)),
    }


def test_hand_computed_cat_curve():
    d, g = HAND_DETECTIONS[0], HAND_TARGETS[0]
    tp0, fp0 = match_image(d["boxes"].numpy(), d["scores"].numpy(), g["boxes"].numpy(), g["difficult"].numpy())
    # in the input order: the difficult one (neither), the duplicate, the first hit
    assert tp0.tolist() == [False, False, True] and fp0.tolist() == [False, True, False]
    cat1 = HAND_DETECTIONS[1]["labels"] == 1
    tp1, fp1 = match_image(
        HAND_DETECTIONS[1]["boxes"][cat1].numpy(),
        HAND_DETECTIONS[1]["scores"][cat1].numpy(),
        HAND_TARGETS[1]["boxes"][:1].numpy(),
        np.zeros(1, bool),
    )
    scores = np.concatenate([d["scores"].numpy(), HAND_DETECTIONS[1]["scores"][cat1].numpy()])
    recall, precision = precision_recall(scores, np.concatenate([tp0, tp1]), np.concatenate([fp0, fp1]), 2)
    assert recall.tolist() == pytest.approx([1 / 2, 1 / 2, 1 / 2, 1 / 2, 1])
    assert precision.tolist() == pytest.approx([1, 1 / 2, 1 / 2, 1 / 3, 1 / 2])


def test_devkit_matching_rules():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    # [2,0,12,10] (pixel boxes: x2, y2 + 1): IoU 99/143 = 0.69 with the taken first box, 88/154 = 0.57 with the
    # free second one. The devkit looks only at the best-overlapping ground truth, so it is a FP (COCO would
    # match the second).
    tp, fp = match_image(np.array([[0, 0, 10, 10], [2, 0, 12, 10]]), np.array([0.9, 0.8]), boxes, np.zeros(2, bool))
    assert tp.tolist() == [True, False] and fp.tolist() == [False, True]
    # IoU exactly 0.5 matches (their test is iou >= 0.5): pixels 0..9 x 0..9 (100) in 0..9 x 0..19 (200).
    tp, fp = match_image(np.array([[0, 0, 9, 9]]), np.array([0.5]), np.array([[0, 0, 9, 19]]), np.zeros(1, bool))
    assert tp.tolist() == [True]
    # ... in continuous coordinates the same boxes overlap 81 / 171 < 0.5:
    assert match_image(np.array([[0, 0, 9, 9]]), np.array([0.5]), np.array([[0, 0, 9, 19]]), np.zeros(1, bool),
                       pixel=False)[1].tolist() == [True]  # fmt: skip
    # Equal scores: the authors' argsort()[::-1] takes the later one first, and it finds the ground truth.
    tp, _ = match_image(np.array([[0, 0, 10, 10]] * 2), np.array([0.5, 0.5]), boxes[:1], np.zeros(1, bool))
    assert tp.tolist() == [False, True]
    # No ground truth of the class in the image: everything is a FP.
    tp, fp = match_image(np.array([[0, 0, 1, 1]]), np.array([0.1]), np.zeros((0, 4)), np.zeros(0, bool))
    assert fp.tolist() == [True] and tp.tolist() == [False]


def test_voc_ap_by_hand():
    # TP FP TP FP TP with 4 positives: recall 1/4 1/4 1/2 1/2 3/4, precision 1 1/2 2/3 1/2 3/5.
    recall = np.array([1, 1, 2, 2, 3]) / 4
    precision = np.array([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    # envelope: 1 on (0, 1/4], 2/3 on (1/4, 1/2], 3/5 on (1/2, 3/4], nothing beyond -> 1/4 + 1/6 + 3/20 = 17/30
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(17 / 30)
    # levels 0, .1, .2 -> 1; .3, .4, .5 -> 2/3; .6, .7 -> 3/5; .8, .9, 1 -> 0: (3 + 2 + 6/5) / 11 = 31/55
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(31 / 55)
    # A recall of exactly 3/10 does not reach their 0.3 level, np.arange's 0.30000000000000004 (0, .1, .2 -> 3/11).
    assert voc_ap(np.array([3 / 10]), np.array([1.0]), use_07_metric=True) == pytest.approx(3 / 11)
    assert voc_ap(np.array([3 / 10]), np.array([1.0])) == pytest.approx(3 / 10)
    # No detections: empty curves give 0 for both.
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0 and voc_ap(np.zeros(0), np.zeros(0), use_07_metric=True) == 0.0


@pytest.mark.parametrize("metric", ["voc", "coco"])
def test_perfect_and_empty_detections(metric):
    if metric == "coco":
        pytest.importorskip("pycocotools")
    targets = [gt([[10, 10, 60, 60], [70, 20, 110, 70]], [1, 2]), gt([[5, 5, 45, 55]], [2])]
    perfect = [det(t["boxes"], [0.9] * len(t["labels"]), t["labels"]) for t in targets]
    empty = [det([], [], []) for _ in targets]
    for detections, expected in ((perfect, 1.0), (empty, 0.0)):
        evaluator = DetectionEvaluator(2, metric=metric)
        evaluator.update(detections, targets)
        result = evaluator.compute()
        # COCOeval averages 101 precisions, so its 1.0 can come out as 0.9999999999999999
        assert result["map50"] == pytest.approx(expected)
        assert result["ap50_per_class"] == {"1": pytest.approx(expected), "2": pytest.approx(expected)}
        if metric == "voc":
            assert result["map50_voc07"] == pytest.approx(expected) and result["map50_continuous"] == expected
        else:
            assert [result["ap"], result["ap75"], result["ap_medium"]] == pytest.approx([expected] * 3)
            assert math.isnan(result["ap_small"]) and math.isnan(result["ap_large"])  # no such objects


def test_class_without_ground_truth_is_left_out():
    evaluator = DetectionEvaluator(3)
    # class 2 only has a (false) detection, class 3 nothing at all: the mean is class 1's 1.0, not 1/3.
    evaluator.update([det([[0, 0, 10, 10], [0, 0, 5, 5]], [0.9, 0.8], [1, 2])], [gt([[0, 0, 10, 10]], [1])])
    result = evaluator.compute()
    assert result["ap50_per_class"] == {"1": 1.0}
    assert result["map50"] == pytest.approx(result["map50_voc07"]) == 1.0


def _authors_formula(detections, targets, label, use_07_metric):
    """The authors' evaluator's AP of one class (their ``eval_detection_voc``), computed here from its definition:
    per image, the class's detections by ``argsort()[::-1]`` of their scores, boxes with x2 and y2 plus 1, each
    detection's best ground truth by IoU, >= 0.5 a hit; a hit on a difficult one is -1 (ignored), on a taken one
    0; then all images' by ``argsort()[::-1]``, precision tp / (tp + fp), recall tp / non-difficult positives,
    11-point AP over ``np.arange(0., 1.1, 0.1)`` or the area under the precision envelope."""
    positives, scores, outcome = 0, [], []
    for d, t in zip(detections, targets):
        pred = d["labels"].numpy() == label
        boxes, conf = d["boxes"].numpy()[pred], d["scores"].numpy()[pred]
        keep = t["labels"].numpy() == label
        gt_boxes, difficult = t["boxes"].numpy()[keep], t["difficult"].numpy()[keep]
        positives += int((~difficult).sum())
        order = conf.argsort()[::-1]
        boxes, conf = boxes[order], conf[order]
        scores.extend(conf)
        if len(boxes) == 0:
            continue
        if len(gt_boxes) == 0:
            outcome.extend([0] * len(boxes))
            continue
        a, b = boxes.copy(), gt_boxes.copy()
        a[:, 2:] += 1
        b[:, 2:] += 1
        tl, br = np.maximum(a[:, None, :2], b[:, :2]), np.minimum(a[:, None, 2:], b[:, 2:])
        inter = np.prod(br - tl, axis=2) * (tl < br).all(axis=2)
        iou = inter / (np.prod(a[:, 2:] - a[:, :2], axis=1)[:, None] + np.prod(b[:, 2:] - b[:, :2], axis=1) - inter)
        best = iou.argmax(axis=1)
        best[iou.max(axis=1) < 0.5] = -1
        taken = np.zeros(len(gt_boxes), bool)
        for j in best:
            if j < 0:
                outcome.append(0)
                continue
            outcome.append(-1 if difficult[j] else 0 if taken[j] else 1)
            taken[j] = True
    order = np.array(scores).argsort()[::-1]
    result = np.array(outcome, dtype=np.int8)[order]
    tp, fp = np.cumsum(result == 1), np.cumsum(result == 0)
    with np.errstate(invalid="ignore"):
        precision = np.nan_to_num(tp / (fp + tp))
    recall = tp / positives
    if use_07_metric:
        ap = 0.0
        for level in np.arange(0.0, 1.1, 0.1):
            ap += (0 if np.sum(recall >= level) == 0 else np.max(precision[recall >= level])) / 11
        return ap
    mrec, mpre = np.concatenate(([0], recall, [1])), np.concatenate(([0], precision, [0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def _random_set(seed: int):
    rng = np.random.default_rng(seed)
    detections, targets = [], []
    for _ in range(8):
        m = int(rng.integers(0, 5))
        xy = rng.integers(0, 60, (m, 2))
        gt_boxes = np.concatenate([xy, xy + rng.integers(4, 30, (m, 2))], 1)
        gt_labels = rng.integers(1, 4, m)
        targets.append(gt(gt_boxes.tolist(), gt_labels.tolist(), (rng.random(m) < 0.25).tolist()))
        # jittered copies of the ground truth (some twice, some relabelled) plus boxes anywhere;
        # scores on a coarse grid so that ties happen.
        copies = np.repeat(np.arange(m), rng.integers(0, 3, m))
        jittered = gt_boxes[copies] + rng.integers(-3, 4, (len(copies), 4))
        labels = np.where(rng.random(len(copies)) < 0.2, rng.integers(1, 4, len(copies)), gt_labels[copies])
        k = int(rng.integers(0, 4))
        xy = rng.integers(0, 60, (k, 2))
        noise = np.concatenate([xy, xy + rng.integers(4, 30, (k, 2))], 1)
        boxes = np.concatenate([jittered, noise]).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
        scores = np.round(rng.random(len(boxes)), 1)
        detections.append(det(boxes.tolist(), scores.tolist(), np.concatenate([labels, rng.integers(1, 4, k)])))
    return detections, targets


@pytest.mark.parametrize("seed", range(4))
def test_equals_the_authors_formula_on_random_data(seed):
    detections, targets = _random_set(seed)
    ours = average_precision_per_class(detections, targets, 3)
    assert ours
    for label, (area, ap07) in ours.items():
        assert abs(area - _authors_formula(detections, targets, label, use_07_metric=False)) < 1e-6
        assert abs(ap07 - _authors_formula(detections, targets, label, use_07_metric=True)) < 1e-6


def test_recalls_on_their_shifted_levels_and_difficult_objects():
    """Ten objects per class (two more difficult ones), found 3, 6 and 7 at a time: recalls land exactly on
    0.3, 0.6 and 0.7, which their np.arange levels put a hair below. The headline numbers are theirs."""
    targets, detections = [], []
    for found in (3, 6, 7):
        boxes = [[20 * i, 0, 20 * i + 15, 15] for i in range(12)]
        targets.append(gt(boxes, [1] * 12, [False] * 10 + [True] * 2))
        hits = boxes[:found] + boxes[10:]  # the difficult ones found too: ignored, not false positives
        detections.append(det(hits + [[0, 100, 9, 109]], [0.9] * len(hits) + [0.95], [1] * (len(hits) + 1)))
    for d, t in zip(detections, targets):
        evaluator = DetectionEvaluator(1)
        evaluator.update([d], [t])
        result = evaluator.compute()
        assert abs(result["map50_voc07"] - _authors_formula([d], [t], 1, use_07_metric=True)) < 1e-6
        assert abs(result["map50"] - _authors_formula([d], [t], 1, use_07_metric=False)) < 1e-6
    # 3 of 10 behind one false positive: precision 3/4 at recall 0.3, which their 0.3 level does not see.
    assert _authors_formula(detections[:1], targets[:1], 1, use_07_metric=True) == pytest.approx(3 * 0.75 / 11)


def test_coco_known_iou():
    pytest.importorskip("pycocotools")
    # [20,10,70,60] against [10,10,60,60]: 40*50 / (60*50) = IoU 2/3, so it counts at IoU 0.5 ... 0.65
    # (4 of COCO's 10 thresholds) and never from 0.7 on.
    evaluator = DetectionEvaluator(1, class_names=["box"], metric="coco")
    evaluator.update([det([[20, 10, 70, 60]], [0.8], [1])], [gt([[10, 10, 60, 60]], [1])])
    result = evaluator.compute()
    assert result["ap50"] == result["map50"] == pytest.approx(1.0)
    assert result["ap75"] == 0.0
    assert result["ap"] == pytest.approx(0.4)
    assert result["ap50_per_class"] == {"box": pytest.approx(1.0)}
    assert "Average Precision" in result["coco_summary"]


@pytest.mark.parametrize("metric", ["voc", "coco"])
def test_difficult_ground_truth_is_ignored(metric):
    if metric == "coco":
        pytest.importorskip("pycocotools")
    targets = [gt([[10, 10, 60, 60], [100, 100, 150, 150], [200, 10, 240, 60]], [1, 1, 1], [False, True, True])]
    # a perfect hit, a top-scoring detection on a difficult box, and the other difficult box missed: still AP 1
    detections = [det([[10, 10, 60, 60], [100, 100, 150, 150]], [0.5, 0.99], [1, 1])]
    evaluator = DetectionEvaluator(1, metric=metric)
    evaluator.update(detections, targets)
    assert evaluator.compute()["map50"] == pytest.approx(1.0)
    # COCO's name for it works too
    evaluator.reset()
    evaluator.update(
        detections, [{"boxes": targets[0]["boxes"], "labels": targets[0]["labels"], "iscrowd": torch.tensor([0, 1, 1])}]
    )
    assert evaluator.compute()["map50"] == pytest.approx(1.0)


GOOD_DET, GOOD_GT = det([[0, 0, 10, 10]], [0.9], [1]), gt([[0, 0, 10, 10]], [1])


@pytest.mark.parametrize(
    "detections, targets, match",
    [
        ([GOOD_DET], [GOOD_GT, GOOD_GT], "detections for 1 images but targets for 2"),
        ([{**GOOD_DET, "boxes": torch.zeros(1, 5)}], [GOOD_GT], r"shape \[N, 4\]"),
        ([GOOD_DET], [{**GOOD_GT, "boxes": torch.tensor([[0.0, 0, 10, 10, 1]])}], r"shape \[N, 4\]"),
        ([{**GOOD_DET, "labels": torch.tensor([0])}], [GOOD_GT], r"label 0, outside 1\.\.2"),
        ([GOOD_DET], [{**GOOD_GT, "labels": torch.tensor([3])}], r"label 3, outside 1\.\.2"),
        ([{**GOOD_DET, "scores": torch.tensor([0.9, 0.1])}], [GOOD_GT], "'scores' has 2 entries but there are 1 boxes"),
        ([{"boxes": GOOD_DET["boxes"], "labels": GOOD_DET["labels"]}], [GOOD_GT], "'scores' entry"),
        ([GOOD_DET], [{**GOOD_GT, "boxes": torch.tensor([[10.0, 0, 5, 10]])}], "x2 >= x1"),
    ],
)
def test_bad_input_is_one_clear_error(detections, targets, match):
    with pytest.raises(ConfigError, match=match):
        DetectionEvaluator(2).update(detections, targets)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2, "metric": "map"}, "unknown detection metric 'map'"),
        ({"num_classes": 2, "class_names": ["a"]}, "2 distinct names"),
        ({"num_classes": 2, "class_names": ["a", "a"]}, "with repeats"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DetectionEvaluator(**kwargs)


def test_compute_without_ground_truth_says_so():
    evaluator = DetectionEvaluator(2)
    with pytest.raises(ConfigError, match="no ground-truth boxes"):
        evaluator.compute()
    evaluator.update([GOOD_DET], [gt([[0, 0, 10, 10]], [1], [True])])
    with pytest.raises(ConfigError, match="no ground-truth boxes"):
        evaluator.compute()


def test_coco_without_pycocotools_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)  # makes the import fail like a missing package
    with pytest.raises(MissingDependencyError, match=r"mobilenext\[detection\]"):
        DetectionEvaluator(2, metric="coco")
