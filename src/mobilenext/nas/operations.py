"""The candidate operations of the DARTS cell, plus the sandglass block (and, as the paper's control,
MobileNetV2's inverted residual) as cell operations.

Every operation maps ``C`` channels to ``C`` channels at stride 1 or 2. ``affine=False`` during the search,
as in DARTS: a learnable BN scale would let an operation grow its output instead of the architecture
weight alpha doing it, which blurs the comparison between candidates.

The DARTS operations put ReLU first (ReLU-conv-BN), because a cell's inputs are BN outputs of earlier
cells. The sandglass and inverted-residual blocks are the blocks as the networks use them: ReLU6 inside,
BN-only linear ends, and their own shortcut at stride 1.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable

import torch
from timm.layers import BatchNormAct2d, make_divisible
from torch import nn

from ..errors import ConfigError
from ..models.sandglass import SandglassBlock

__all__ = [
    "OPS",
    "DARTS_OPS",
    "OP_PRESETS",
    "SANDGLASS_REDUCTION",
    "IR_EXPANSION",
    "ReLUConvBN",
    "SepConv",
    "DilConv",
    "FactorizedReduce",
    "Zero",
    "check_op_name",
    "resolve_ops",
]

SANDGLASS_REDUCTION = 6  # the paper's t: the thin middle is C/6 wide (rounded to a multiple of 8)
IR_EXPANSION = 6  # MobileNetV2's t: the wide middle is 6C


def _bn(channels: int, affine: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=affine)


class ReLUConvBN(nn.Sequential):
    """ReLU, a plain conv, BN: the cell's input preprocessing."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),  # the input is a node state other operations read too
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, bias=False),
            _bn(out_chs, affine),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated depthwise conv, 1x1 conv, BN."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_chs, in_chs, kernel_size, stride, padding, dilation=dilation, groups=in_chs, bias=False),
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            _bn(out_chs, affine),
        )


class SepConv(nn.Sequential):
    """Two stacked ReLU + depthwise + 1x1 + BN units (DARTS's "separable conv"); the first carries the stride."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(in_chs, in_chs, kernel_size, stride, padding, 1, affine),
            DilConv(in_chs, out_chs, kernel_size, 1, padding, 1, affine),
        )


class Zero(nn.Module):
    """The "none" operation: zeros of the output's shape (an edge the search may switch off)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing every other pixel: two stride-2 1x1 convs, the second shifted by
    one pixel, concatenated. It is ``skip_connect`` at stride 2 and aligns a cell's older input."""

    def __init__(self, in_chs: int, out_chs: int, affine: bool = True):
        super().__init__()
        if out_chs % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {out_chs}.")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(in_chs, out_chs // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(in_chs, out_chs // 2, 1, stride=2, bias=False)
        self.bn = _bn(out_chs, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def _pool(kind: str, channels: int, stride: int, affine: bool) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(3, stride, padding=1)
    return nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)


def sandglass_op(channels: int, stride: int, affine: bool) -> SandglassBlock:
    """The sandglass block as a cell operation: C -> C, thin middle C/6, shortcut at stride 1."""
    reduced = make_divisible(channels / SANDGLASS_REDUCTION, 8)
    norm = functools.partial(nn.BatchNorm2d, affine=affine)
    return SandglassBlock(channels, channels, reduced, stride=stride, norm_layer=norm)


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual: 1x1 expand + BN + ReLU6, depthwise 3x3 + BN + ReLU6, linear 1x1 project
    + BN, shortcut at stride 1. Module names as timm's EfficientNet block (whose class is private), so search
    checkpoints keep their keys."""

    def __init__(self, channels: int, stride: int, expansion: int, affine: bool) -> None:
        super().__init__()
        mid = channels * expansion

        def norm(chs: int, act: bool) -> BatchNormAct2d:
            return BatchNormAct2d(chs, affine=affine, act_layer=nn.ReLU6, apply_act=act)

        self.conv_pw, self.bn1 = nn.Conv2d(channels, mid, 1, bias=False), norm(mid, True)
        self.conv_dw = nn.Conv2d(mid, mid, 3, stride, padding=1, groups=mid, bias=False)
        self.bn2 = norm(mid, True)
        self.conv_pwl, self.bn3 = nn.Conv2d(mid, channels, 1, bias=False), norm(channels, False)
        self.has_shortcut = stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv_pwl(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        return out + x if self.has_shortcut else out


def inverted_residual_op(channels: int, stride: int, affine: bool) -> InvertedResidual:
    """MobileNetV2's inverted residual as a cell operation: C -> 6C -> C, shortcut at stride 1."""
    return InvertedResidual(channels, stride, IR_EXPANSION, affine)


# name -> builder(channels, stride, affine). The names are DARTS's, so its genotypes load unchanged.
OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": functools.partial(_pool, "max"),
    "avg_pool_3x3": functools.partial(_pool, "avg"),
    "skip_connect": lambda c, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
    "sg_block_3x3": sandglass_op,
    "ir_block_3x3": inverted_residual_op,
}

DARTS_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
             "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")  # fmt: skip
# What `--ops` accepts besides single names: the DARTS space, and the paper's two extended spaces.
OP_PRESETS: dict[str, tuple[str, ...]] = {
    "darts": DARTS_OPS,
    "darts+sg": (*DARTS_OPS, "sg_block_3x3"),
    "darts+ir": (*DARTS_OPS, "ir_block_3x3"),
}


def check_op_name(name: object, where: str) -> str:
    """``name`` if it is a known operation, else one sentence naming the closest ones."""
    if isinstance(name, str) and name in OPS:
        return name
    close = difflib.get_close_matches(str(name), [*OPS, *OP_PRESETS], n=2)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"known: {', '.join(OPS)}."
    raise ConfigError(f"{where}: unknown operation {name!r}; {hint}")


def resolve_ops(names: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Expand preset names (``darts``, ``darts+sg``, ``darts+ir``) and check every operation name, keeping
    the first occurrence of each; e.g. ``("darts", "sg_block_3x3")`` is the paper's sandglass space."""
    ops: list[str] = []
    for name in [names] if isinstance(names, str) else names:
        for op in OP_PRESETS.get(name, (name,)):
            check_op_name(op, "--ops")
            if op not in ops:
                ops.append(op)
    if len([op for op in ops if op != "none"]) < 1:
        raise ConfigError("--ops needs at least one operation besides 'none'.")
    return tuple(ops)
