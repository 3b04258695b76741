"""The authors' released layout: a reference model and the key mapping to ours.

The authors' released code (github.com/yitu-opensource/MobileNeXt, ``codebase/models/mnext.py``) keeps
every block as one flat ``nn.Sequential`` called ``conv`` of conv / BN / ReLU6 modules, numbered by
position, so the same layer has a different index depending on which depthwise convs the block has. Our
blocks name their layers (``conv_dw1``, ``conv_reduce``, ``conv_expand``, ``conv_dw2``);
:func:`official_module_names` pairs the two by walking our model.

:class:`OfficialMobileNeXt` mirrors the authors' module structure and forward, including the slice
assignment of the shortcut in every block that has one, at any identity multiplier. It is the reference
our tests compare against and the baseline of the benchmarks (``authors:`` models); use
:class:`~mobilenext.models.MobileNeXt` for anything else.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from timm.layers import make_divisible
from torch import nn

from .layers import ConvNormAct
from .mobilenext import MOBILENEXT_STAGES, MobileNeXt
from .sandglass import identity_channels, sandglass_reduced_channels

__all__ = ["OfficialMobileNeXt", "is_official_layout", "official_module_names", "official_to_ours", "ours_to_official"]


class _OfficialSandglass(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, t: int, identity_multiplier: float, keep_3x3: bool):
        super().__init__()
        hidden = sandglass_reduced_channels(inp, oup, t)
        layers: list[nn.Module] = []
        if t == 2 or inp == oup or keep_3x3:
            layers += [nn.Conv2d(inp, inp, 3, 1, 1, groups=inp, bias=False), nn.BatchNorm2d(inp), nn.ReLU6(True)]
        layers += [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden)]
        layers += [nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU6(True)]
        if t == 2 or inp == oup or keep_3x3 or stride == 2:
            layers += [nn.Conv2d(oup, oup, 3, stride, 1, groups=oup, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and inp == oup
        self.identity_channels = identity_channels(inp, identity_multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Their ``SGBlock.forward``: in every block with a shortcut, the first ``C / identity_div`` channels
        of the output are *assigned through a slice*, ``out[:, :k] = out[:, :k] + x[:, :k]``. Their released
        code has ``identity_div = 1``, so at alpha 1 the whole tensor goes through that slice assignment
        (``torch.export``: a slice, an add and a copy/scatter per block; torch's ONNX exporter folds the
        full-width case into one Add, the narrower slice of alpha < 1 into a ScatterND)."""
        out = self.conv(x)
        if self.use_res_connect:
            k = self.identity_channels
            out[:, :k] = out[:, :k] + x[:, :k]
        return out


class OfficialMobileNeXt(nn.Module):
    """The authors' MobileNeXt module tree (``features.*``, ``classifier.1``), for reference and comparison."""

    def __init__(self, width_mult: float = 1.0, identity_multiplier: float = 1.0, num_classes: int = 1000):
        super().__init__()
        inp = make_divisible(32 * width_mult, 8)
        features: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, inp, 3, 2, 1, bias=False), nn.BatchNorm2d(inp), nn.ReLU6(True))
        ]
        for stage_idx, (t, c, n, s) in enumerate(MOBILENEXT_STAGES):
            last = stage_idx == len(MOBILENEXT_STAGES) - 1
            oup = make_divisible(c * (max(1.0, width_mult) if last else width_mult), 8)
            for i in range(n):
                stride = s if i == 0 else 1
                keep_3x3 = n == 1 and s == 1 and i == 0
                features.append(_OfficialSandglass(inp, oup, stride, t, identity_multiplier, keep_3x3))
                inp = oup
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(inp, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier(x)


def is_official_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """True when the keys follow the authors' ``features.N...`` layout."""
    return any(k.startswith("features.") for k in state_dict)


def official_module_names(model: MobileNeXt) -> Iterator[tuple[str, str]]:
    """Yield ``(our module name, the authors' module name)`` for every conv, BN and the classifier."""
    yield "stem.conv", "features.0.0"
    yield "stem.bn", "features.0.1"
    feature_idx = 1
    for stage_idx, stage in enumerate(model.blocks):
        for block_idx, block in enumerate(stage):
            position = 0
            for name in ("conv_dw1", "conv_reduce", "conv_expand", "conv_dw2"):
                layer = getattr(block, name)
                if not isinstance(layer, ConvNormAct):
                    continue  # this block has no such depthwise conv
                ours = f"blocks.{stage_idx}.{block_idx}.{name}"
                yield f"{ours}.conv", f"features.{feature_idx}.conv.{position}"
                yield f"{ours}.bn", f"features.{feature_idx}.conv.{position + 1}"
                position += len(layer)  # conv, BN [, ReLU6]: the same three in the authors' flat Sequential
            feature_idx += 1
    yield "classifier", "classifier.1"


def _rename(state_dict: dict[str, torch.Tensor], prefixes: dict[str, str]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in state_dict.items():
        module, _, param = key.rpartition(".")
        renamed[f"{prefixes[module]}.{param}" if module in prefixes else key] = value
    return renamed


def official_to_ours(state_dict: dict[str, torch.Tensor], model: MobileNeXt) -> dict[str, torch.Tensor]:
    """Rename an authors'-layout state_dict to ``model``'s keys; unknown keys pass through unchanged."""
    return _rename(state_dict, {official: ours for ours, official in official_module_names(model)})


def ours_to_official(state_dict: dict[str, torch.Tensor], model: MobileNeXt) -> dict[str, torch.Tensor]:
    """The inverse of :func:`official_to_ours`."""
    return _rename(state_dict, dict(official_module_names(model)))
