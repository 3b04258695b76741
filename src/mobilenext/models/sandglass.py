"""The sandglass block: the contribution of MobileNeXt (Zhou et al., ECCV 2020).

MobileNetV2's inverted residual goes thin -> wide -> thin and puts its shortcut between the *thin* ends.
The sandglass block flips the bottleneck: it keeps the tensor *wide* at both ends, squeezes it in the
middle, and joins the shortcut between the wide ends, where gradients lose less information::

    x (C wide) ─┬─ dw 3x3 + BN + ReLU6          spatial filtering on the wide input
                │  1x1 reduce to C/t + BN       linear: no activation on the thin tensor
                │  1x1 expand to C' + BN + ReLU6
                │  dw 3x3 + BN (stride s)       linear; carries the stride
                └─ + first round(alpha * C') channels of x   (only if s == 1 and C == C')

The identity tensor multiplier alpha adds the shortcut to the first alpha*C' channels only; the paper
shows alpha = 1/2 keeps accuracy and saves the memory traffic of the other half.
"""

import functools
import math

import torch
from timm.layers import DropPath, make_divisible
from torch import nn

from .._compat import SqueezeExcite, graph_capture
from ..errors import ConfigError
from .layers import ConvNormAct

__all__ = ["SandglassBlock", "sandglass_reduced_channels", "identity_channels"]


def sandglass_reduced_channels(in_chs: int, out_chs: int, reduction: int) -> int:
    """Width of the thin middle of a block, as the authors compute it.

    ``in_chs // reduction``, but never thinner than ``ceil(out_chs / 6)`` rounded to a multiple of 16:
    without that floor the first block of a wider stage would squeeze its input through a slit.
    """
    reduced = in_chs // reduction
    if reduced < out_chs / 6.0:
        reduced = make_divisible(math.ceil(out_chs / 6.0), 16)
    return reduced


def identity_channels(channels: int, identity_multiplier: float) -> int:
    """Number of leading channels that receive the shortcut, ``round(alpha * channels)``."""
    if not 0.0 < identity_multiplier <= 1.0:
        raise ConfigError(
            f"identity_multiplier must be in (0, 1], got {identity_multiplier}; "
            "use 1 for the full shortcut or e.g. 0.5 for the paper's half identity."
        )
    return max(1, int(round(channels * identity_multiplier)))


class SandglassBlock(nn.Module):
    """Sandglass block: depthwise (wide) -> 1x1 reduce (linear) -> 1x1 expand -> depthwise (wide, linear).

    Args:
        in_chs: Input channels (the wide input).
        out_chs: Output channels (the wide output).
        reduced_chs: Channels of the thin middle; see :func:`sandglass_reduced_channels`.
        stride: Stride, carried by the last depthwise conv.
        dw_in: Keep the leading depthwise conv. The authors drop it in the first block of a stage that
            changes width, where a depthwise conv on the old, narrower tensor would be a waste.
        dw_out: Keep the trailing depthwise conv. The authors drop it in stride-1 blocks that change width.
        shortcut: Allow the residual connection (it is used only when stride is 1 and widths match).
        identity_multiplier: Fraction alpha in (0, 1] of the channels that receive the shortcut.
        kernel_size: Kernel size of both depthwise convs.
        act_layer: Activation after the first depthwise conv and after the expansion.
        norm_layer: Normalization layer.
        drop_path_rate: Stochastic depth rate applied to the residual branch.
        pw_groups: Groups of the two 1x1 convs (the EfficientNet-based models use 2).
        bypass_chs: Channels of the depthwise output that skip the two 1x1 convs and are concatenated
            after them (a Ghost-style split used by the authors' 5.68M model); 0 sends all through.
        se_chs: Squeeze-excite width on the block output (0: none), gated by a sigmoid.
        padding: Conv padding; ``"same"`` gives TensorFlow's asymmetric padding for stride 2.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        reduced_chs: int,
        stride: int = 1,
        dw_in: bool = True,
        dw_out: bool = True,
        shortcut: bool = True,
        identity_multiplier: float = 1.0,
        kernel_size: int = 3,
        act_layer: type[nn.Module] = nn.ReLU6,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        drop_path_rate: float = 0.0,
        pw_groups: int = 1,
        bypass_chs: int = 0,
        se_chs: int = 0,
        padding: str = "",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"sandglass stride must be 1 or 2, got {stride}.")
        if stride == 2 and not dw_out:
            raise ConfigError("a stride-2 sandglass block needs its trailing depthwise conv (dw_out=True).")
        layer = functools.partial(ConvNormAct, norm_layer=norm_layer, padding=padding)
        self.conv_dw1 = (
            layer(in_chs, in_chs, kernel_size, groups=in_chs, act_layer=act_layer) if dw_in else nn.Identity()
        )
        self.bypass_chs = bypass_chs
        self.squeezed_in_chs = in_chs - bypass_chs
        self.conv_reduce = layer(self.squeezed_in_chs, reduced_chs, 1, groups=pw_groups, act_layer=None)  # linear
        self.conv_expand = layer(reduced_chs, out_chs - bypass_chs, 1, groups=pw_groups, act_layer=act_layer)
        self.conv_dw2 = (  # linear
            layer(out_chs, out_chs, kernel_size, stride=stride, groups=out_chs, act_layer=None)
            if dw_out
            else nn.Identity()
        )
        self.se = SqueezeExcite(out_chs, rd_channels=se_chs, act_layer=act_layer) if se_chs else nn.Identity()
        self.out_chs = out_chs
        self.has_shortcut = shortcut and stride == 1 and in_chs == out_chs
        self.identity_chs = identity_channels(out_chs, identity_multiplier)
        # 1 on the channels that receive the shortcut, 0 on the rest; not saved (the authors' layout). Always
        # there, even where unused, so that TorchScript sees the same attributes in every block.
        mask = (torch.arange(out_chs) < self.identity_chs).float().view(1, out_chs, 1, 1)
        self.register_buffer("identity_mask", mask, persistent=False)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_expansion(self.forward_to_expansion(x), x)

    def forward_to_expansion(self, x: torch.Tensor) -> torch.Tensor:
        """First half: depthwise on the wide input, squeeze, expand. The output is the block's widest
        activated tensor, which is where the SSDLite detector taps its feature maps."""
        x = self.conv_dw1(x)
        if self.bypass_chs:
            x, bypass = x.split([self.squeezed_in_chs, self.bypass_chs], dim=1)
            return torch.cat([self.conv_expand(self.conv_reduce(x)), bypass], dim=1)
        return self.conv_expand(self.conv_reduce(x))

    def forward_from_expansion(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """Second half: the linear depthwise conv (with the stride), squeeze-excite, and the shortcut from
        the block's input ``shortcut``."""
        x = self.se(self.conv_dw2(x))
        if self.has_shortcut:
            x = self._add_identity(self.drop_path(x), shortcut)
        return x

    def _add_identity(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        k = self.identity_chs
        if not torch.jit.is_scripting():  # noqa: SIM102 (TorchScript skips only a branch this test opens)
            if not graph_capture(x):
                # x is this block's own fresh output: adding in place touches only k channels and allocates
                # nothing (at alpha 1 too: a fresh tensor per block costs eager inference ~3% at 224 px).
                x[:, :k] += shortcut[:, :k]
                return x
        if k == self.out_chs:
            return x + shortcut
        # For autograd and graph capture (TorchScript, fx, export, compile) a full-width add of the masked
        # shortcut. An in-place slice add exports as ScatterND; slicing, adding and concatenating costs two
        # copies and, in onnxruntime, the blocked (NCHWc) layout between blocks. The mask keeps the add fused
        # into the conv before it: alpha 1/2 then runs as fast as alpha 1 there (measured: 1.005x vs 1.107x).
        return x + shortcut * self.identity_mask.to(shortcut.dtype)

    def extra_repr(self) -> str:
        if not self.has_shortcut:
            return "shortcut=False"
        return f"shortcut=True, identity_chs={self.identity_chs}"
