"""SSDLite with a MobileNeXt (or MobileNetV2) backbone, on torchvision's SSD.

The detector is torchvision's: ``SSD`` does the matching, hard-negative mining, box coding, resizing and
NMS; ``SSDLiteHead`` the depthwise-separable predictors. What is ours is what the paper specifies:

- **where the backbone is tapped**: MobileNeXt gives 576 channels at stride 16 *inside* the first block
  of the 576-wide stage (after its 1x1 expansion and ReLU6, before its stride-2 depthwise conv) and 1280
  at stride 32 inside the last block (after its expansion, before its final depthwise conv, which the
  detector drops). MobileNetV2 gives its 96-channel stage output and its 1280-channel head conv.
- **the extra layers**, four stride-2 layers down to 1x1; for MobileNeXt sandglass-shaped (depthwise on
  the wide input, linear 1x1 reduction, 1x1 expansion).
- **the authors' default boxes**: explicit min/max sizes and steps per map, which torchvision's
  scale-based ``DefaultBoxGenerator`` cannot express (their max size of map k is not the min of k+1).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from timm.layers import ConvNormAct
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteHead

from ..errors import ConfigError, UnknownModelError
from ..models.factory import get_model
from ..models.mobilenext import MobileNeXt

__all__ = [
    "AUTHORS_BOXES",
    "DETECTORS",
    "MobileNeXtSSDFeatures",
    "MobileNetV2SSDFeatures",
    "SSDDefaultBoxes",
    "create_detector",
    "ssdlite",
]

# The authors' SSDLite-320 default boxes: per feature map (20, 10, 5, 3, 2, 1 cells at 320 px).
AUTHORS_BOXES = dict(
    min_sizes=(45, 90, 135, 180, 225, 270),
    max_sizes=(120, 180, 220, 260, 300, 320),
    steps=(16, 32, 64, 120, 160, 320),
    aspect_ratios=((2, 3),) * 6,
)
AUTHORS_SIZE = 320

# Extra layers after the two backbone taps: output widths, and for MobileNeXt the squeeze ratio of each.
MOBILENEXT_EXTRAS = ((512, 0.2), (256, 0.25), (256, 0.5), (128, 0.5))
MOBILENETV2_EXTRAS = (512, 256, 256, 64)

# Torchvision's SSDLite norm for the new layers (head and extras): TF's BN epsilon and a slow momentum.
_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


class SSDDefaultBoxes(DefaultBoxGenerator):
    """SSD default boxes from explicit sizes in pixels (the Caffe SSD ``PriorBox``), on torchvision's generator.

    On map k: a square of ``min_sizes[k]``, a square of ``sqrt(min_sizes[k] * max_sizes[k])``, and for each
    aspect ratio r two boxes of ``min_sizes[k] * sqrt(r)`` by ``min_sizes[k] / sqrt(r)``: 6 per cell for
    r in (2, 3). Sizes are fractions of ``image_size``, so the generator also serves other input sizes;
    ``steps`` (cell pitch in pixels) apply only at the size they were set for, elsewhere the cells follow
    the feature maps.
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
        if not len(min_sizes) == len(max_sizes) == len(aspect_ratios):
            raise ConfigError("min_sizes, max_sizes and aspect_ratios need one entry per feature map.")
        # Set before the parent's __init__, which calls _generate_wh_pairs (plain lists: no Module needed yet).
        self.min_sizes = [size / image_size for size in min_sizes]
        self.max_sizes = [size / image_size for size in max_sizes]
        super().__init__(
            [list(r) for r in aspect_ratios],
            scales=[*self.min_sizes, 1.0],
            steps=list(steps) if steps else None,
            clip=clip,
        )

    def _generate_wh_pairs(
        self, num_outputs: int, dtype: torch.dtype = torch.float32, device: torch.device = torch.device("cpu")
    ) -> list[torch.Tensor]:
        pairs = []
        for k in range(num_outputs):
            small, large = self.min_sizes[k], math.sqrt(self.min_sizes[k] * self.max_sizes[k])
            wh = [[small, small], [large, large]]
            for ratio in self.aspect_ratios[k]:
                w, h = small * math.sqrt(ratio), small / math.sqrt(ratio)
                wh += [[w, h], [h, w]]
            pairs.append(torch.as_tensor(wh, dtype=dtype, device=device))
        return pairs


def _features_dict(maps: list[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((str(i), m) for i, m in enumerate(maps))


def _sandglass_extra(in_chs: int, out_chs: int, squeeze: float) -> nn.Sequential:
    """Stride-2 extra layer shaped like a sandglass block: depthwise 3x3 on the wide input (+BN+ReLU6),
    linear 1x1 reduction, 1x1 to the output width (+BN+ReLU6)."""
    reduced = int(in_chs * squeeze)
    return nn.Sequential(
        ConvNormAct(in_chs, in_chs, 3, stride=2, groups=in_chs, norm_layer=_NORM, act_layer=nn.ReLU6),
        ConvNormAct(in_chs, reduced, 1, norm_layer=_NORM, apply_act=False),
        ConvNormAct(reduced, out_chs, 1, norm_layer=_NORM, act_layer=nn.ReLU6),
    )


def _inverted_extra(in_chs: int, out_chs: int) -> nn.Sequential:
    """SSDLite's extra layer for MobileNetV2: 1x1 to half the output width, depthwise 3x3 stride 2, 1x1 out."""
    mid = out_chs // 2
    relu6 = dict(norm_layer=_NORM, act_layer=nn.ReLU6)
    return nn.Sequential(
        ConvNormAct(in_chs, mid, 1, **relu6),
        ConvNormAct(mid, mid, 3, stride=2, groups=mid, **relu6),
        ConvNormAct(mid, out_chs, 1, **relu6),
    )


class MobileNeXtSSDFeatures(nn.Module):
    """The six SSDLite feature maps of a MobileNeXt: two taps inside sandglass blocks, four extra layers.

    ``body`` is consumed: its classifier and the last block's final depthwise conv are dropped, since the
    detector taps before them (unused parameters would also stall DDP).
    """

    def __init__(self, body: MobileNeXt, extras: Sequence[tuple[int, float]] = MOBILENEXT_EXTRAS) -> None:
        super().__init__()
        blocks = [block for stage in body.blocks for block in stage]
        stride16_end = _first_block_leaving_stride(body, 16)
        self.stem = body.stem
        self.to_stride16 = nn.Sequential(*blocks[:stride16_end])
        self.tap16_block = blocks[stride16_end]  # tapped at its expansion, then run to the end
        self.to_stride32 = nn.Sequential(*blocks[stride16_end + 1 : -1])
        self.tap32_block = blocks[-1]  # tapped at its expansion; the rest is dropped
        self.tap32_block.conv_dw2 = nn.Identity()
        self.tap32_block.se = nn.Identity()
        widths = [self.tap16_block.conv_expand.conv.out_channels, self.tap32_block.conv_expand.conv.out_channels]
        self.extras = nn.ModuleList()
        for out_chs, squeeze in extras:
            self.extras.append(_sandglass_extra(widths[-1], out_chs, squeeze))
            widths.append(out_chs)
        self.out_channels = widths

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.to_stride16(self.stem(x))
        tap16 = self.tap16_block.forward_to_expansion(x)
        x = self.to_stride32(self.tap16_block.forward_from_expansion(tap16, x))
        maps = [tap16, self.tap32_block.forward_to_expansion(x)]
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return _features_dict(maps)


def _first_block_leaving_stride(body: MobileNeXt, reduction: int) -> int:
    """Index (over all blocks) of the stride-2 block that takes the network from ``reduction`` to twice it."""
    current = 2  # the stem
    for index, block in enumerate(b for stage in body.blocks for b in stage):
        stride = block.conv_dw2.conv.stride[0] if isinstance(block.conv_dw2, ConvNormAct) else 1
        if stride == 2 and current == reduction:
            return index
        current *= stride
    raise ConfigError(f"the backbone has no stride-2 block at stride {reduction}.")


class MobileNetV2SSDFeatures(nn.Module):
    """The six SSDLite feature maps of timm's MobileNetV2: the 96-wide stage output at stride 16, the
    1280-wide head conv at stride 32, then four extra layers."""

    def __init__(self, body: nn.Module, extras: Sequence[int] = MOBILENETV2_EXTRAS) -> None:
        super().__init__()
        stride16_stages = [i for i, info in enumerate(body.feature_info) if info["reduction"] == 16]
        last16 = int(body.feature_info[stride16_stages[-1]]["module"].split(".")[1])
        self.to_stride16 = nn.Sequential(body.conv_stem, body.bn1, *body.blocks[: last16 + 1])
        self.to_stride32 = nn.Sequential(*body.blocks[last16 + 1 :], body.conv_head, body.bn2)
        widths = [body.feature_info[stride16_stages[-1]]["num_chs"], body.conv_head.out_channels]
        self.extras = nn.ModuleList()
        for out_chs in extras:
            self.extras.append(_inverted_extra(widths[-1], out_chs))
            widths.append(out_chs)
        self.out_channels = widths

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        tap16 = self.to_stride16(x)
        maps = [tap16, self.to_stride32(tap16)]
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return _features_dict(maps)


def _init_new_layers(module: nn.Module) -> None:
    """Extras start like torchvision's SSDLite layers (small normal weights), not like the backbone."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=0.03)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def ssdlite(
    backbone: str = "mobilenext_100",
    num_classes: int = 21,
    size: int = AUTHORS_SIZE,
    backbone_checkpoint: str | None = None,
    **ssd_kwargs: Any,
) -> SSD:
    """SSDLite on ``backbone`` (a MobileNeXt or timm MobileNetV2 name) for ``num_classes`` including background.

    ``backbone_checkpoint``: classification weights for the backbone (any layout ``get_model``
    reads: ours, timm's, the authors'); the classifier is dropped. ``ssd_kwargs`` go to torchvision's
    ``SSD`` (``score_thresh``, ``nms_thresh``, ``detections_per_img``, ...).
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes counts the background too, so it must be at least 2, got {num_classes}.")
    body = get_model(backbone, pretrained=backbone_checkpoint or False)  # the checkpoint's classifier loads too
    body.reset_classifier(0)  # and goes: the detector needs the features only
    if isinstance(body, MobileNeXt):
        features = MobileNeXtSSDFeatures(body)
    elif backbone.startswith("mobilenetv2"):
        features = MobileNetV2SSDFeatures(body)
    else:
        raise UnknownModelError(f"no SSDLite backbone for {backbone!r}; use a mobilenext_* or mobilenetv2_* model.")
    _init_new_layers(features.extras)
    boxes = SSDDefaultBoxes(
        AUTHORS_BOXES["min_sizes"],
        AUTHORS_BOXES["max_sizes"],
        AUTHORS_BOXES["aspect_ratios"],
        image_size=AUTHORS_SIZE,
        steps=AUTHORS_BOXES["steps"] if size == AUTHORS_SIZE else None,
    )
    head = SSDLiteHead(features.out_channels, boxes.num_anchors_per_location(), num_classes, _NORM)
    settings = {
        "score_thresh": 0.001,
        "nms_thresh": 0.55,
        "detections_per_img": 300,
        "topk_candidates": 300,
        "image_mean": list(body.pretrained_cfg["mean"]),
        "image_std": list(body.pretrained_cfg["std"]),
        **ssd_kwargs,
    }
    model = SSD(features, boxes, (size, size), num_classes, head=head, **settings)
    model.backbone_name = backbone
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
