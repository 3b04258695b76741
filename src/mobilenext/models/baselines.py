"""Ablation baselines from the paper that are not MobileNeXt models.

MobileNetV2 itself is timm's ``mobilenetv2_*``; this module only adds what the paper varies on it.
"""

from collections import OrderedDict
from typing import Any

import timm
from timm.layers import ConvNormAct
from timm.models import EfficientNet, generate_default_cfgs, get_pretrained_cfg, register_model
from torch import nn

from .._compat import factory_device
from ..errors import ConfigError
from .mobilenext import _cfg

__all__ = ["BASELINE_FIGURES", "add_depthwise_after_projection"]

# ImageNet top-1 (%) the MobileNeXt paper compares against: MobileNetV2-1.0 as published (Sandler et al.,
# 2018), and the paper's own ablation of it with an extra depthwise conv.
BASELINE_FIGURES: dict[str, dict[str, float]] = {
    "mobilenetv2_100": dict(params_m=3.5, madds_m=300, top1=72.0),
    "mobilenetv2_100_extra_dw": dict(top1=73.0),
}


def add_depthwise_after_projection(model: nn.Module) -> nn.Module:
    """Append a depthwise 3x3 conv + BN (linear, stride 1) to the bottleneck output of every MobileNetV2 block.

    The block's last norm (``bn3`` of an inverted residual, ``bn2`` of the first depthwise-separable block)
    becomes ``Sequential(bn=<that norm>, dw=<the new conv>)``, so the shortcut still joins after it.
    """
    for block in model.modules():
        # timm's blocks (their classes are private): an inverted residual ends in conv_pwl + bn3, the
        # depthwise-separable first block in conv_pw + bn2
        norm_name = "bn3" if hasattr(block, "conv_pwl") else "bn2" if hasattr(block, "conv_pw") else None
        if norm_name is None:
            continue
        norm = getattr(block, norm_name)
        chs = norm.num_features
        weight = norm.weight
        dw = ConvNormAct(chs, chs, 3, groups=chs, apply_act=False).to(device=weight.device, dtype=weight.dtype)
        setattr(block, norm_name, nn.Sequential(OrderedDict(bn=norm, dw=dw)))
    return model


default_cfgs = generate_default_cfgs(
    {"mobilenetv2_100_extra_dw": _cfg(interpolation="bicubic", first_conv="conv_stem")}
)


@register_model
def mobilenetv2_100_extra_dw(pretrained: bool = False, **kwargs: Any) -> EfficientNet:
    """The paper's "MBV2 + extra dwise conv" (73% top-1): timm's MobileNetV2-1.0 with one more depthwise
    3x3 conv + BN on each block's bottleneck output (after the linear projection, before the shortcut).

    It shows that MobileNeXt's gain is not just from having two depthwise convs per block.
    """
    if pretrained:  # timm would load before the extra convs exist
        raise ConfigError("mobilenetv2_100_extra_dw: load weights with mobilenext.get_model(name, pretrained=PATH).")
    kwargs["pretrained_cfg"] = kwargs.get("pretrained_cfg") or get_pretrained_cfg("mobilenetv2_100_extra_dw")
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    with factory_device(device):  # timm before 1.0.21: EfficientNet takes no device= or dtype=
        model = timm.create_model("mobilenetv2_100", **{**kwargs, "pretrained": False})
        model = add_depthwise_after_projection(model)
    return model.to(dtype=dtype) if dtype is not None else model
