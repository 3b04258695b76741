"""SSDLite with a MobileNeXt (or MobileNetV2) backbone: the authors' detector, module for module, on
torchvision's SSD.

torchvision's ``SSD`` does what it computes exactly as the authors' code does (matching at IoU 0.5 with each
object's best prior forced, box coding with variances 0.1/0.2, 3:1 hard-negative mining, smooth-L1, NMS).
What is written here is what theirs (``houqb/ssdlite-pytorch-mobilenext``) does differently from torchvision's
SSDLite, with the same module tree, so that their checkpoints map key for key (:mod:`.authors`):

- **where the backbone is tapped**: MobileNeXt gives 576 channels at stride 16 *inside* the first block of the
  576-wide stage (after its 1x1 expansion and ReLU6, before its stride-2 depthwise conv) and 1280 at stride 32
  inside the last block (after its expansion). That last block then runs to its end (its linear depthwise
  conv and BN), and its output, not the tapped map, feeds the first extra layer. MobileNetV2 gives its
  96-channel stage output and its 1280-channel head conv.
- **the extra layers**, four stride-2 layers down to 1x1: for MobileNeXt sandglass-shaped (depthwise 3x3 on the
  wide input + BN + ReLU6, linear 1x1 reduction, 1x1 expansion + BN + ReLU6); for MobileNetV2 inverted
  residuals without shortcut (1x1 expansion by 0.2/0.5/0.5/0.5, depthwise 3x3, linear 1x1 projection).
  PyTorch's default BatchNorm; Kaiming-normal (fan-out) convolutions.
- **the predictor** (:class:`SSDLitePredictor`): on the first five maps a depthwise 3x3 conv *with bias* + BN +
  ReLU6 + a 1x1 conv with bias; on the last map a single 1x1 conv with bias (torchvision's ``SSDLiteHead``
  has no depthwise bias and puts the separable block on every map). Xavier-uniform weights, zero biases.
- **the default boxes**: explicit min/max sizes and steps per map, VOC's and COCO's (which differ in the max
  sizes and in the last map's aspect ratios), which torchvision's scale-based ``DefaultBoxGenerator``
  cannot express (their max size of map k is not the min of k+1).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.ssd import SSD
from torchvision.ops import boxes as box_ops
from torchvision.ops import sigmoid_focal_loss

from ..errors import ConfigError, UnknownModelError
from ..models.checkpoint import keep_model_classifier, load_checkpoint
from ..models.factory import create_model
from ..models.mobilenext import MobileNeXt
from .settings import LOSSES, ssd_keywords
from .transforms import PIPELINES, AuthorsImageTransform

__all__ = [
    "AUTHORS_BOXES",
    "AUTHORS_SIZE",
    "DETECTORS",
    "FocalSSD",
    "SSDLite",
    "MobileNeXtSSDFeatures",
    "MobileNetV2SSDFeatures",
    "SSDDefaultBoxes",
    "SSDLitePredictor",
    "create_detector",
    "select_detections",
    "ssdlite",
]

# The authors' SSDLite-320 default boxes (their configs/*_voc0712.yaml and *_coco.yaml): per feature map
# (20, 10, 5, 3, 2, 1 cells at 320 px). VOC: 6 boxes everywhere (3,234); COCO: 4 on the last map (3,232).
AUTHORS_BOXES = {
    "voc": dict(
        min_sizes=(45, 90, 135, 180, 225, 270),
        max_sizes=(120, 180, 220, 260, 300, 320),
        steps=(16, 32, 64, 120, 160, 320),
        aspect_ratios=((2, 3),) * 6,
    ),
    "coco": dict(
        min_sizes=(45, 90, 135, 180, 225, 270),
        max_sizes=(90, 135, 180, 225, 270, 315),
        steps=(16, 32, 64, 120, 160, 320),
        aspect_ratios=((2, 3),) * 5 + ((2,),),
    ),
}
AUTHORS_SIZE = 320

# Extra layers after the two backbone taps: output widths and the hidden width's ratio to the input width.
MOBILENEXT_EXTRAS = ((512, 0.2), (256, 0.25), (256, 0.5), (128, 0.5))
MOBILENETV2_EXTRAS = ((512, 0.2), (256, 0.5), (256, 0.5), (64, 0.5))


class SSDDefaultBoxes(nn.Module):
    """SSD default boxes from explicit sizes in pixels (the Caffe SSD ``PriorBox``), in the format of
    torchvision's ``DefaultBoxGenerator`` (which ``SSD`` calls): per image, ``[A, 4]`` x1, y1, x2, y2 in input
    pixels, ordered by map, row, column, box. Ours because torchvision's generator derives each map's sizes
    from a scale list, which cannot express the authors' (their max size of map k is not the min of k + 1).

    On map k: a square of ``min_sizes[k]``, a square of ``sqrt(min_sizes[k] * max_sizes[k])``, and for each
    aspect ratio r two boxes of ``min_sizes[k] * sqrt(r)`` by ``min_sizes[k] / sqrt(r)``: 6 per cell for
    r in (2, 3); sizes clipped to the image (``clip``). Sizes are fractions of ``image_size``, so the
    generator also serves other input sizes; ``steps`` (cell pitch in pixels) apply only at the size they
    were set for, elsewhere the cells follow the feature maps.
    """

    def __init__(
        self,
        min_sizes: Sequence[float],
        max_sizes: Sequence[float],
        aspect_ratios: Sequence[Sequence[int]],
        image_size: int = AUTHORS_SIZE,
        steps: Sequence[int] | None = None,
        clip: bool = True,
    ) -> None:
        super().__init__()
        if not len(min_sizes) == len(max_sizes) == len(aspect_ratios):
            raise ConfigError("min_sizes, max_sizes and aspect_ratios need one entry per feature map.")
        self.aspect_ratios = [list(r) for r in aspect_ratios]
        self.steps = list(steps) if steps else None
        self.clip = clip
        self.box_sizes = [  # (w, h) per box of a cell, as fractions of the image
            _cell_boxes(small / image_size, large / image_size, ratios)
            for small, large, ratios in zip(min_sizes, max_sizes, self.aspect_ratios)
        ]

    def num_anchors_per_location(self) -> list[int]:
        return [len(sizes) for sizes in self.box_sizes]

    def _centre_form(self, grid_sizes: list[torch.Size], image_size: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        boxes = []
        for k, (rows, cols) in enumerate(grid_sizes):
            if self.steps is None:  # cells per unit of image: the map's own size
                pitch_y, pitch_x = rows, cols
            else:
                pitch_y, pitch_x = image_size[0] / self.steps[k], image_size[1] / self.steps[k]
            # in float64, then rounded once, as the authors' PriorBox (Python floats, then a float32 tensor)
            centre_x = ((torch.arange(0, cols, dtype=torch.float64) + 0.5) / pitch_x).to(dtype=dtype)
            centre_y = ((torch.arange(0, rows, dtype=torch.float64) + 0.5) / pitch_y).to(dtype=dtype)
            grid_y, grid_x = torch.meshgrid(centre_y, centre_x, indexing="ij")
            sizes = self.box_sizes[k].clamp(min=0, max=1) if self.clip else self.box_sizes[k]
            centres = torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)) * len(sizes), dim=-1).reshape(-1, 2)
            boxes.append(torch.cat((centres, sizes.repeat(rows * cols, 1)), dim=1))
        return torch.cat(boxes, dim=0)

    def forward(self, image_list: Any, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """``image_list``: torchvision's ``ImageList`` (the batch padded to one size, and each image's size)."""
        image_size = image_list.tensors.shape[-2:]
        boxes = self._centre_form([m.shape[-2:] for m in feature_maps], image_size, feature_maps[0].dtype)
        boxes = boxes.to(feature_maps[0].device)
        # the same boxes as the authors' PriorBox gives them to their matcher: relative corners
        self.relative_priors = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)
        scale = torch.tensor([image_size[1], image_size[0]], device=boxes.device)
        corners = torch.cat(
            [(boxes[:, :2] - 0.5 * boxes[:, 2:]) * scale, (boxes[:, :2] + 0.5 * boxes[:, 2:]) * scale], -1
        )
        return [corners for _ in image_list.image_sizes]


def _cell_boxes(small: float, large: float, ratios: Sequence[int]) -> torch.Tensor:
    """The authors' boxes of one cell: two squares (min size, and the geometric mean of min and max), then a
    pair per aspect ratio."""
    wh = [[small, small], [math.sqrt(small * large)] * 2]
    for ratio in ratios:
        w, h = small * math.sqrt(ratio), small / math.sqrt(ratio)
        wh += [[w, h], [h, w]]
    return torch.as_tensor(wh, dtype=torch.float32)


def _features_dict(maps: list[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((str(i), m) for i, m in enumerate(maps))


def _conv(in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1, depthwise: bool = False, bias: bool = False):
    return nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, groups=in_chs if depthwise else 1, bias=bias)


def sandglass_extra(in_chs: int, out_chs: int, ratio: float) -> nn.Sequential:
    """The authors' MobileNeXt extra layer (one flat Sequential, their indices): depthwise 3x3 stride 2 on the
    wide input + BN + ReLU6 (0-2), linear 1x1 reduction + BN (3-4), 1x1 expansion + BN + ReLU6 (5-7)."""
    hidden = int(in_chs * ratio)
    return nn.Sequential(
        _conv(in_chs, in_chs, 3, 2, depthwise=True), nn.BatchNorm2d(in_chs), nn.ReLU6(inplace=True),
        _conv(in_chs, hidden), nn.BatchNorm2d(hidden),
        _conv(hidden, out_chs), nn.BatchNorm2d(out_chs), nn.ReLU6(inplace=True),
    )  # fmt: skip


class InvertedResidualExtra(nn.Module):
    """The authors' MobileNetV2 extra layer: an inverted residual of stride 2 (so no shortcut), ``conv`` holding
    1x1 expansion + BN + ReLU6, depthwise 3x3 + BN + ReLU6, then a linear 1x1 projection + BN."""

    def __init__(self, in_chs: int, out_chs: int, ratio: float) -> None:
        super().__init__()
        hidden = round(in_chs * ratio)
        self.conv = nn.Sequential(
            nn.Sequential(_conv(in_chs, hidden), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)),
            nn.Sequential(_conv(hidden, hidden, 3, 2, depthwise=True), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)),
            _conv(hidden, out_chs),
            nn.BatchNorm2d(out_chs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _kaiming_init(module: nn.Module) -> None:
    """The authors' backbone initialisation, which their extra layers keep (the ImageNet weights load after)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out")
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


class MobileNeXtSSDFeatures(nn.Module):
    """The six SSDLite feature maps of a MobileNeXt: two taps inside sandglass blocks, four extra layers.

    ``body`` keeps its classification layout (so the authors' ``features.*`` keys map onto it as for the
    classifier); its classifier is removed.
    """

    def __init__(self, body: MobileNeXt, extras: Sequence[tuple[int, float]] = MOBILENEXT_EXTRAS) -> None:
        super().__init__()
        body.reset_classifier(0)
        self.body = body
        blocks = self._blocks()
        self.tap16 = _first_block_leaving_stride(body, 16)
        widths = [blocks[self.tap16].conv_expand.conv.out_channels, blocks[-1].conv_expand.conv.out_channels]
        self.extras = nn.ModuleList()
        in_chs = blocks[-1].out_chs  # the last block's output (its full width) feeds the extras
        for out_chs, ratio in extras:
            self.extras.append(sandglass_extra(in_chs, out_chs, ratio))
            widths.append(in_chs := out_chs)
        _kaiming_init(self.extras)
        self.out_channels = widths

    def _blocks(self) -> list[nn.Module]:
        return [block for stage in self.body.blocks for block in stage]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        blocks = self._blocks()
        x = self.body.stem(x)
        maps = []
        for index, block in enumerate(blocks):
            if index in (self.tap16, len(blocks) - 1):  # tapped at the expansion, then run to the end
                maps.append(block.forward_to_expansion(x))
                x = block.forward_from_expansion(maps[-1], x)
            else:
                x = block(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return _features_dict(maps)


def _first_block_leaving_stride(body: MobileNeXt, reduction: int) -> int:
    """Index (over all blocks) of the stride-2 block that takes the network from ``reduction`` to twice it."""
    current = 2  # the stem
    for index, block in enumerate(b for stage in body.blocks for b in stage):
        stride = block.conv_dw2.conv.stride[0] if hasattr(block.conv_dw2, "conv") else 1
        if stride == 2 and current == reduction:
            return index
        current *= stride
    raise ConfigError(f"the backbone has no stride-2 block at stride {reduction}.")


class MobileNetV2SSDFeatures(nn.Module):
    """The six SSDLite feature maps of timm's MobileNetV2: the 96-wide stage output at stride 16, the
    1280-wide head conv at stride 32, then four extra layers."""

    def __init__(self, body: nn.Module, extras: Sequence[tuple[int, float]] = MOBILENETV2_EXTRAS) -> None:
        super().__init__()
        body.reset_classifier(0)
        self.body = body
        stride16_stages = [i for i, info in enumerate(body.feature_info) if info["reduction"] == 16]
        self.last16 = int(body.feature_info[stride16_stages[-1]]["module"].split(".")[1])
        widths = [body.feature_info[stride16_stages[-1]]["num_chs"], body.conv_head.out_channels]
        self.extras = nn.ModuleList()
        for out_chs, ratio in extras:
            self.extras.append(InvertedResidualExtra(widths[-1], out_chs, ratio))
            widths.append(out_chs)
        _kaiming_init(self.extras)
        self.out_channels = widths

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        body = self.body
        x = body.bn1(body.conv_stem(x))
        for stage in body.blocks[: self.last16 + 1]:
            x = stage(x)
        maps = [x]
        for stage in body.blocks[self.last16 + 1 :]:
            x = stage(x)
        maps.append(body.bn2(body.conv_head(x)))
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return _features_dict(maps)


class SeparablePredictor(nn.Module):
    """Depthwise 3x3 with bias + BN + ReLU6, then a 1x1 conv with bias (the authors' ``SeparableConv2d``)."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(in_chs, in_chs, 3, depthwise=True, bias=True),
            nn.BatchNorm2d(in_chs),
            nn.ReLU6(inplace=True),
            _conv(in_chs, out_chs, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SSDLitePredictor(nn.Module):
    """The authors' SSDLite box predictor: per map a class head and a box head, separable on every map but the
    last, which has a single 1x1 conv. Outputs torchvision ``SSD``'s head format: ``cls_logits`` (N, boxes,
    classes) and ``bbox_regression`` (N, boxes, 4), boxes ordered by map, row, column, box."""

    def __init__(
        self, in_channels: Sequence[int], boxes_per_location: Sequence[int], num_classes: int, focal: bool = False
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        last = len(in_channels) - 1

        def head(level: int, per_box: int) -> nn.Module:
            chs, out = in_channels[level], boxes_per_location[level] * per_box
            return SeparablePredictor(chs, out) if level < last else _conv(chs, out, bias=True)

        self.cls_headers = nn.ModuleList(head(level, num_classes) for level in range(len(in_channels)))
        self.reg_headers = nn.ModuleList(head(level, 4) for level in range(len(in_channels)))
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        if focal:  # as theirs for the focal loss: every class-head conv starts small, at a prior of 0.01
            for layer in self.cls_headers.modules():
                if isinstance(layer, nn.Conv2d):
                    nn.init.normal_(layer.weight, std=0.01)
                    nn.init.constant_(layer.bias, -math.log(99))

    @staticmethod
    def _flatten(outputs: list[torch.Tensor], per_box: int) -> torch.Tensor:
        return torch.cat([o.permute(0, 2, 3, 1).reshape(o.shape[0], -1, per_box) for o in outputs], dim=1)

    def forward(self, maps: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "cls_logits": self._flatten([h(m) for h, m in zip(self.cls_headers, maps)], self.num_classes),
            "bbox_regression": self._flatten([h(m) for h, m in zip(self.reg_headers, maps)], 4),
        }


def select_detections(
    boxes: torch.Tensor, scores: torch.Tensor, score_thresh: float, nms_thresh: float, detections_per_img: int
) -> dict[str, torch.Tensor]:
    """One image's detections from its decoded ``boxes`` [A, 4] and per-class ``scores`` [A, K] (column ``k``
    scores label ``k + 1``), as the authors' ``PostProcessor``: every (box, class) pair scoring above
    ``score_thresh`` is a candidate, per-class NMS at ``nms_thresh``, the ``detections_per_img`` best kept.
    torchvision's SSD also keeps only the top ``topk_candidates`` per class before NMS and clips the boxes to
    the image; the authors do neither."""
    box, column = torch.where(scores > score_thresh)
    candidates, candidate_scores = boxes[box], scores[box, column]
    keep = box_ops.batched_nms(candidates, candidate_scores, column, nms_thresh)[:detections_per_img]
    return {"boxes": candidates[keep], "scores": candidate_scores[keep], "labels": column[keep] + 1}


def match_priors_as_authors(gt_boxes: torch.Tensor, priors: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """The ground truth each prior is matched to (-1: background), as the authors' ``assign_priors`` decides it:
    IoU of ``gt_boxes`` and ``priors`` in relative corner coordinates with 1e-5 added to the union, each prior's
    best ground truth (the first of equal IoUs), then each ground truth's best prior forced onto it (a later
    ground truth winning a prior two want), background below ``iou_threshold`` (strictly) unless forced.

    torchvision's ``SSDMatcher`` computes IoU in pixels without the 1e-5, so a prior near the threshold or a tie
    can go the other way (a prior at IoU 0.50002 by pixels is background for them)."""
    top_left = torch.max(gt_boxes[None, :, :2], priors[:, None, :2])
    bottom_right = torch.min(gt_boxes[None, :, 2:], priors[:, None, 2:])
    inter = _area(top_left, bottom_right)
    gt_area, prior_area = (
        _area(gt_boxes[None, :, :2], gt_boxes[None, :, 2:]),
        _area(priors[:, None, :2], priors[:, None, 2:]),
    )
    ious = inter / (gt_area + prior_area - inter + 1e-5)  # in their order of operations, to the last bit
    best_iou, best_target = ious.max(1)
    best_prior = ious.max(0).indices
    for target, prior in enumerate(best_prior.tolist()):
        best_target[prior] = target
    best_iou.index_fill_(0, best_prior, 2.0)
    return torch.where(best_iou < iou_threshold, torch.full_like(best_target, -1), best_target)


def _area(top_left: torch.Tensor, bottom_right: torch.Tensor) -> torch.Tensor:
    size = (bottom_right - top_left).clamp(min=0.0)
    return size[..., 0] * size[..., 1]


class SSDLite(SSD):
    """torchvision's ``SSD`` with the authors' inference: softmax scores without the background column, and
    :func:`select_detections` (no per-class top-k, boxes not clipped to the image). Training is torchvision's
    (box coding, 3:1 hard-negative mining), which computes what theirs does, with ``authors_matching`` their
    matching of priors (:func:`match_priors_as_authors`) instead of torchvision's ``SSDMatcher``."""

    authors_matching = False

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs) -> dict[str, torch.Tensor]:
        if self.authors_matching:  # torchvision's forward matched by its own rule: match again, theirs
            priors = self.anchor_generator.relative_priors.to(anchors[0].device)
            size = torch.tensor(self.transform.fixed_size[::-1] * 2, dtype=priors.dtype, device=priors.device)
            matched_idxs = [
                match_priors_as_authors(target["boxes"] / size, priors)
                if target["boxes"].numel()
                else torch.full((len(priors),), -1, dtype=torch.int64, device=priors.device)
                for target in targets
            ]
        return self.losses(targets, head_outputs, anchors, matched_idxs)

    def losses(self, targets, head_outputs, anchors, matched_idxs) -> dict[str, torch.Tensor]:
        """The losses given each prior's matched ground truth: torchvision's SSD loss."""
        return super().compute_loss(targets, head_outputs, anchors, matched_idxs)

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``[..., A, K]`` scores of the K object classes: column ``k`` scores label ``k + 1``."""
        return logits.softmax(-1)[..., 1:]

    def postprocess_detections(self, head_outputs, image_anchors, image_shapes) -> list[dict[str, torch.Tensor]]:
        return [
            select_detections(
                self.box_coder.decode_single(regression, anchors),
                scores,
                self.score_thresh,
                self.nms_thresh,
                self.detections_per_img,
            )
            for regression, scores, anchors in zip(
                head_outputs["bbox_regression"], self.class_scores(head_outputs["cls_logits"]), image_anchors
            )
        ]


class FocalSSD(SSDLite):
    """SSD scored as the authors' COCO detector: per-class sigmoids instead of a softmax with a background column.

    Training: their sigmoid focal loss (alpha 0.25, gamma 2) over every default box, no hard-negative mining,
    times 5 and divided by the number of matched boxes; box regression as torchvision's SSD. Column ``c - 1``
    scores class ``c``; background is all columns at 0. Their heads have one column more than classes (81 for
    COCO's 80), never trained: it is not scored here (theirs scores it as a label that no class has).
    """

    FOCAL_ALPHA, FOCAL_GAMMA, CLASS_WEIGHT = 0.25, 2.0, 5.0

    def losses(self, targets, head_outputs, anchors, matched_idxs) -> dict[str, torch.Tensor]:
        losses = super().losses(targets, head_outputs, anchors, matched_idxs)  # for its box regression
        logits = head_outputs["cls_logits"]
        wanted = torch.zeros_like(logits)
        for image, (target, matched) in enumerate(zip(targets, matched_idxs)):
            foreground = torch.where(matched >= 0)[0]
            wanted[image, foreground, target["labels"][matched[foreground]] - 1] = 1.0
        focal = sigmoid_focal_loss(logits, wanted, self.FOCAL_ALPHA, self.FOCAL_GAMMA, reduction="sum")
        matched_boxes = max(1, sum(int((m >= 0).sum()) for m in matched_idxs))
        return {**losses, "classification": self.CLASS_WEIGHT * focal / matched_boxes}

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[..., :-1].sigmoid()  # the last column was never trained


def ssdlite(
    backbone: str = "mobilenext_100",
    num_classes: int = 21,
    size: int = AUTHORS_SIZE,
    backbone_checkpoint: str | None = None,
    boxes: str = "voc",
    loss: str = "softmax",
    pipeline: str = "torchvision",
    **ssd_kwargs: Any,
) -> SSD:
    """SSDLite on ``backbone`` (a MobileNeXt or timm MobileNetV2 name) for ``num_classes`` including background.

    ``pipeline="authors"``: their test-time preprocessing (OpenCV resize of the uint8 image, then their mean
    and std: :class:`~mobilenext.detection.transforms.AuthorsImageTransform`) and their matching of priors
    in training (:func:`match_priors_as_authors`); ``"torchvision"``: torchvision's SSD's own.

    ``backbone_checkpoint``: classification weights for the backbone (ours, timm's, the authors'; EMA weights
    where the file has them); their classifier is not used. ``boxes``: the authors' default boxes of their
    ``voc`` or ``coco`` configs. ``ssd_kwargs`` go to torchvision's ``SSD`` (``score_thresh``, ``nms_thresh``,
    ``detections_per_img``, ``image_mean``, ...); by default the authors' test settings for ``loss``
    (:func:`~mobilenext.detection.settings.ssd_keywords`).
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes counts the background too, so it must be at least 2, got {num_classes}.")
    if boxes not in AUTHORS_BOXES:
        raise ConfigError(f"boxes {boxes!r}: choose one of {', '.join(AUTHORS_BOXES)}.")
    body = create_model(backbone)
    if backbone_checkpoint:  # its classifier is replaced by the model's own, which the features then drop
        load_checkpoint(body, backbone_checkpoint, filter_fn=partial(keep_model_classifier, warn=False))
    if isinstance(body, MobileNeXt):
        features = MobileNeXtSSDFeatures(body)
    elif backbone.startswith("mobilenetv2"):
        features = MobileNetV2SSDFeatures(body)
    else:
        raise UnknownModelError(f"no SSDLite backbone for {backbone!r}; use a mobilenext_* or mobilenetv2_* model.")
    spec = AUTHORS_BOXES[boxes]
    generator = SSDDefaultBoxes(
        spec["min_sizes"],
        spec["max_sizes"],
        spec["aspect_ratios"],
        image_size=AUTHORS_SIZE,
        steps=spec["steps"] if size == AUTHORS_SIZE else None,
    )
    if loss not in LOSSES:
        raise ConfigError(f"loss {loss!r}: choose one of {', '.join(LOSSES)}.")
    focal = loss == "focal"
    head = SSDLitePredictor(features.out_channels, generator.num_anchors_per_location(), num_classes, focal=focal)
    settings = {**ssd_keywords({"loss": loss}), **ssd_kwargs}
    model = (FocalSSD if focal else SSDLite)(features, generator, (size, size), num_classes, head=head, **settings)
    model.backbone_name, model.boxes, model.loss, model.pipeline = backbone, boxes, loss, pipeline
    if pipeline == "authors":
        model.transform = AuthorsImageTransform(size, model.transform.image_mean, model.transform.image_std)
        model.authors_matching = True
    elif pipeline != "torchvision":
        raise ConfigError(f"pipeline {pipeline!r}: choose one of {', '.join(PIPELINES)}.")
    return model


# Registered detectors: name -> backbone (SSDLite at 320 px, the paper's setting).
DETECTORS = {
    "ssdlite320_mobilenext_100": "mobilenext_100",
    "ssdlite320_mobilenetv2_100": "mobilenetv2_100",
}


def create_detector(name: str, num_classes: int = 21, **kwargs: Any) -> SSD:
    """A registered detector (see ``DETECTORS``), or ``ssdlite_<backbone>`` for any supported backbone."""
    if name in DETECTORS:
        return ssdlite(DETECTORS[name], num_classes, **kwargs)
    if name.startswith("ssdlite_"):
        return ssdlite(name.removeprefix("ssdlite_"), num_classes, **kwargs)
    raise UnknownModelError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)} or ssdlite_<backbone>.")
