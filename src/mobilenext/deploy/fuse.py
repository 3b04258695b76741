"""Fold BatchNorm into the preceding convolution: free at inference, one op less per layer.

timm models register each conv directly before its norm (``conv``/``bn`` in ``ConvNormAct``, ours and timm's;
``conv_pw``/``bn1``, ``conv_dw``/``bn2``, ``conv_pwl``/``bn3`` in MobileNetV2 blocks; ``conv_stem``/``bn1``),
so a conv followed by a BatchNorm of its width among a module's children is a pair to fold. timm's ``BatchNormAct2d``
keeps its activation (and dropout) after folding. A norm with no conv right before it among its siblings
(the efficient models' ``head_norm``) stays. The tests check the fused model against the original.

A conv-norm-act layer whose norm was folded then becomes one :class:`ConvAct`, or its bare conv if linear: in
eager PyTorch at batch 1 the module calls around each conv are a measurable share of the time (timm's
wrapper, the conv, the activation), and the sandglass block has four such convs.
"""

from __future__ import annotations

import copy

import torch
from timm.layers import BatchNormAct2d
from timm.layers import ConvNormAct as TimmConvNormAct
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..models.layers import ConvNormAct

__all__ = ["ConvAct", "fuse"]


class ConvAct(nn.Conv2d):
    """A convolution (BatchNorm folded in) and its activation in one module: the inference form of timm's
    ``ConvNormAct``, whose parameters it shares."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module):
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",  # the parameters are conv's own, set below
        )
        self.weight, self.bias = conv.weight, conv.bias
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self._conv_forward(x, self.weight, self.bias))


def _after_norm(norm: nn.BatchNorm2d) -> nn.Module:
    """What remains of a norm layer once its affine transform lives in the conv: its activation (and
    dropout, if any), with no wrapper module, since each module call costs eager batch-1 inference time."""
    if not isinstance(norm, BatchNormAct2d):
        return nn.Identity()
    kept = [m for m in (norm.drop, norm.act) if not isinstance(m, nn.Identity)]
    return nn.Sequential(*kept) if len(kept) > 1 else (kept[0] if kept else nn.Identity())


def _feeds(conv: nn.Module, norm: nn.Module) -> bool:
    """Whether ``norm`` normalises ``conv``'s output, judged by order and width: a norm wider than the conv
    before it normalises more than that conv (DARTS's FactorizedReduce concatenates two convs, then norms)."""
    return (
        isinstance(conv, nn.Conv2d)
        and type(norm) in (nn.BatchNorm2d, BatchNormAct2d)
        and norm.track_running_stats
        and norm.num_features == conv.out_channels
    )


def _fuse_children(parent: nn.Module) -> int:
    fused = 0
    children = list(parent.named_children())
    for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
        if _feeds(conv, norm):
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
            setattr(parent, norm_name, _after_norm(norm))
            fused += 1
    return fused + sum(_fuse_children(child) for child in parent.children())


def _collapse_conv_norm_act(parent: nn.Module) -> None:
    """Replace every conv-norm-act layer whose norm is folded (a plain conv, then its activation) by a ConvAct,
    or by the bare conv where no activation follows (the sandglass block's two linear layers)."""
    for name, child in parent.named_children():
        if isinstance(child, ConvNormAct) and _plain_conv(child.conv) and isinstance(child.bn, nn.Identity):
            setattr(parent, name, ConvAct(child.conv, child.act) if hasattr(child, "act") else child.conv)
        elif (
            isinstance(child, TimmConvNormAct)
            and _plain_conv(child.conv)
            and not isinstance(child.bn, nn.modules.batchnorm._BatchNorm)
            and isinstance(getattr(child, "aa", None), (nn.Identity, type(None)))
        ):
            setattr(parent, name, child.conv if isinstance(child.bn, nn.Identity) else ConvAct(child.conv, child.bn))
        else:
            _collapse_conv_norm_act(child)


def _plain_conv(conv: nn.Module) -> bool:
    # not timm's Conv2dSame, whose forward pads first
    return type(conv) is nn.Conv2d


@torch.no_grad()
def fuse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` with every conv + BatchNorm pair folded into one conv."""
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    count = _fuse_children(model)
    _collapse_conv_norm_act(model)
    model.fused_conv_bn = count  # how many pairs were folded, for reports
    return model
