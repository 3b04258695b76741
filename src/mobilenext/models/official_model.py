"""The authors' MobileNeXt module and forward, as they released it: the reference our tests compare against and
the baseline of the benchmarks (``authors:`` models); use :class:`~mobilenext.models.MobileNeXt` for anything
else.

:class:`OfficialMobileNeXt` mirrors their module structure (``features.*``, ``classifier.1``) and forward,
including the slice assignment of the shortcut in every block that has one, at any identity multiplier.
"""

from __future__ import annotations

import torch
from timm.layers import make_divisible
from torch import nn

from .mobilenext import MOBILENEXT_STAGES
from .sandglass import identity_channels, sandglass_reduced_channels

__all__ = ["OfficialMobileNeXt"]


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
