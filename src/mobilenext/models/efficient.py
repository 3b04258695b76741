"""EfficientNet-based MobileNeXt: EfficientNet-B0's macro structure with sandglass blocks.

The two models the authors logged in full (``../shared/reference/official_mobilenext_efficient_*``):

* ``mobilenext_efficient_l``  4,287,498 params, 76.59% top-1 in their run: grouped (g=2) 1x1 convs.
* ``mobilenext_efficient_xl`` 5,683,740 params, 76.79%: half of the channels bypass the 1x1 convs
  (their ``GhostI2RBlock``). The printout fixes the shapes but not which half bypasses; we send the first
  half through the 1x1 convs and concatenate the second half after them.

Both use Swish, squeeze-excite on the block output, BN eps 1e-3 / momentum 0.01 and TensorFlow "same"
padding. The ``*_sympad`` flavours use symmetric PyTorch padding instead: the same layers and weights,
friendlier to export and to runtimes without asymmetric padding, numerically not identical at stride 2.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from timm.models import generate_default_cfgs, register_model
from torch import nn

from .mobilenext import Arch, MobileNeXt, _cfg, _create_mobilenext

__all__ = ["EFFICIENT_STAGES", "efficient_arch"]

# t = reduction ratio, c = output channels, n = blocks, s = stride of the first block, k = depthwise kernel.
EFFICIENT_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    # t,    c, n, s, k
    (2, 96, 2, 1, 3),
    (6, 144, 2, 2, 3),
    (6, 192, 4, 2, 5),
    (6, 288, 4, 2, 3),
    (6, 384, 5, 1, 5),
    (6, 576, 5, 2, 5),
    (6, 960, 4, 1, 3),
    (6, 1280, 2, 1, 3),
)


def efficient_arch(bypass_half: bool, stem_chs: int = 32) -> Arch:
    """Per-block arguments of the EfficientNet-based models.

    Blocks that keep their width (and the t=2 stage) are full sandglass blocks; their 1x1 convs are grouped
    (``bypass_half=False``) or see only half of the channels (``bypass_half=True``). Blocks that change
    width have no leading depthwise conv and plain 1x1 convs, as in the MobileNeXt family.
    """
    in_chs, arch = stem_chs, []
    for t, c, n, s, k in EFFICIENT_STAGES:
        blocks = []
        for i in range(n):
            stride = s if i == 0 else 1
            full = t == 2 or in_chs == c
            bypass = in_chs // 2 if bypass_half and full else 0
            blocks.append(
                dict(
                    in_chs=in_chs,
                    out_chs=c,
                    reduced_chs=math.ceil(in_chs / t),
                    stride=stride,
                    dw_in=full,
                    dw_out=full or stride == 2,
                    kernel_size=k,
                    pw_groups=2 if full and not bypass_half else 1,
                    bypass_chs=bypass,
                    # squeeze widths as logged: a quarter of c/t (l), a quarter of half the input (xl)
                    se_chs=in_chs // 8 if bypass_half else int(c / t / 4),
                )
            )
            in_chs = c
        arch.append(blocks)
    return stem_chs, arch


_EFFICIENT_DEFAULTS = dict(
    head_norm=True,
    act_layer=nn.SiLU,
    norm_layer=partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01),  # TF's 0.99 decay in PyTorch's convention
)


def _create_efficient(variant: str, bypass_half: bool, padding: str, pretrained: bool, **kwargs: Any) -> MobileNeXt:
    return _create_mobilenext(
        variant,
        pretrained,
        **{**_EFFICIENT_DEFAULTS, "arch": efficient_arch(bypass_half), "padding": padding, **kwargs},
    )


default_cfgs = generate_default_cfgs(
    {
        name: _cfg(interpolation="bicubic")
        for name in (
            "mobilenext_efficient_l",
            "mobilenext_efficient_xl",
            "mobilenext_efficient_l_sympad",
            "mobilenext_efficient_xl_sympad",
        )
    }
)


@register_model
def mobilenext_efficient_l(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """EfficientNet-B0 with sandglass blocks, grouped 1x1s: 4,287,498 params, 76.59% top-1 (authors' log)."""
    return _create_efficient("mobilenext_efficient_l", False, "same", pretrained, **kwargs)


@register_model
def mobilenext_efficient_xl(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """EfficientNet-B0 with half-bypass sandglass blocks: 5,683,740 params, 76.79% top-1 (authors' log)."""
    return _create_efficient("mobilenext_efficient_xl", True, "same", pretrained, **kwargs)


@register_model
def mobilenext_efficient_l_sympad(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """``mobilenext_efficient_l`` with symmetric padding, for deployment."""
    return _create_efficient("mobilenext_efficient_l_sympad", False, "", pretrained, **kwargs)


@register_model
def mobilenext_efficient_xl_sympad(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """``mobilenext_efficient_xl`` with symmetric padding, for deployment."""
    return _create_efficient("mobilenext_efficient_xl_sympad", True, "", pretrained, **kwargs)
