"""The conv -> norm -> activation layer of the MobileNeXt family, as a plain ``nn.Sequential``.

timm's ``ConvNormAct`` keeps the activation inside its norm (``BatchNormAct2d``, with a dropout slot), so
each layer costs eager PyTorch five module calls where torchvision's ``Conv2dNormActivation`` and the
authors' code take three; with four such layers per sandglass block that made our model 20% slower than
the authors' at small inputs. This layer has torchvision's structure and timm's key names (``conv``, ``bn``;
the activation holds no tensors), so checkpoints load either way.
"""

from collections import OrderedDict

from timm.layers import create_act_layer, create_conv2d
from torch import nn

__all__ = ["ConvNormAct"]


class ConvNormAct(nn.Sequential):
    """``conv`` (no bias), ``bn`` and, unless ``act_layer`` is None, ``act`` (in place).

    Args:
        in_chs, out_chs, kernel_size, stride, groups: Those of the convolution.
        padding: ``""`` (symmetric) or ``"same"`` (TensorFlow's, asymmetric at stride 2), as in timm.
        norm_layer: Called with ``out_chs``.
        act_layer: Activation class (or timm name); None for a linear layer.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        padding: str = "",
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        act_layer: type[nn.Module] | str | None = nn.ReLU6,
    ) -> None:
        layers = OrderedDict(
            conv=create_conv2d(in_chs, out_chs, kernel_size, stride=stride, groups=groups, padding=padding, bias=False),
            bn=norm_layer(out_chs),
        )
        if act_layer is not None:
            layers["act"] = create_act_layer(act_layer, inplace=True)
        super().__init__(layers)
