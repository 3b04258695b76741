"""The MobileNeXt family (widths 1.4, 1.0, 0.75, 0.5, 0.35), registered with timm.

The layers reproduce the authors' released architecture tensor for tensor; their checkpoints load through
:mod:`mobilenext.models.official`. ``import mobilenext`` makes ``timm.create_model("mobilenext_100")`` work.
"""

from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import SelectAdaptivePool2d, get_norm_act_layer, make_divisible
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from torch import nn
from torch.nn import functional as F

from .._compat import factory_device, feature_take_indices
from ..errors import ConfigError
from .checkpoint import checkpoint_filter_fn
from .layers import ConvNormAct
from .sandglass import SandglassBlock, sandglass_reduced_channels

__all__ = ["ABLATIONS", "AUTHORS_TOP1", "MobileNeXt", "MOBILENEXT_STAGES", "PAPER_FIGURES", "mobilenext_arch"]

# One row per stage, as in the paper's Table 1:
# t = reduction ratio of the block's thin middle, c = output channels at width 1.0,
# n = number of blocks, s = stride of the stage's first block.
MOBILENEXT_STAGES: tuple[tuple[int, int, int, int], ...] = (
    # t,    c, n, s
    (2, 96, 1, 2),
    (6, 144, 1, 1),
    (6, 192, 3, 2),
    (6, 288, 3, 2),
    (6, 384, 4, 1),
    (6, 576, 4, 2),
    (6, 960, 3, 1),
    (6, 1280, 1, 1),
)

# What the paper reports (Table 8): params (M), MAdds (M), ImageNet top-1 (%).
PAPER_FIGURES: dict[str, dict[str, float]] = {
    "mobilenext_140": dict(params_m=6.1, madds_m=590, top1=76.1),
    "mobilenext_100": dict(params_m=3.5, madds_m=300, top1=74.02),
    "mobilenext_075": dict(params_m=2.5, madds_m=210, top1=72.0),
    "mobilenext_050": dict(params_m=2.1, madds_m=110, top1=67.7),
    "mobilenext_035": dict(params_m=1.8, madds_m=80, top1=64.7),
}
# Ablations of the paper, as named configs of MobileNeXt-1.0.
ABLATIONS: dict[str, dict[str, Any]] = {
    "mobilenext_100_half_id": dict(identity_multiplier=1 / 2),
    "mobilenext_100_sixth_id": dict(identity_multiplier=1 / 6),
    "mobilenext_100_no_shortcut": dict(shortcut=False),
}
# Best top-1 of the authors' own ImageNet runs (../shared/reference/official_runs).
AUTHORS_TOP1: dict[str, float] = {
    "mobilenext_100": 74.02,
    "mobilenext_100_half_id": 74.09,
    "mobilenext_efficient_l": 76.59,
    "mobilenext_efficient_xl": 76.79,
}


def _check_width(width_mult: float) -> None:
    if not width_mult > 0:
        raise ConfigError(f"width_mult must be positive, got {width_mult}; the paper uses 1.4, 1.0, 0.75, 0.5, 0.35.")


# An architecture: the stem width and, per stage, the SandglassBlock arguments of each block.
Arch = tuple[int, list[list[dict[str, Any]]]]


def mobilenext_arch(
    width_mult: float = 1.0,
    stages: tuple[tuple[int, int, int, int], ...] = MOBILENEXT_STAGES,
    stem_chs: int = 32,
    round_chs: int = 8,
) -> Arch:
    """The MobileNeXt family's layout at ``width_mult``, with the authors' rules for every block."""
    _check_width(width_mult)

    def width(c: int, multiplier: float = width_mult) -> int:
        return make_divisible(c * multiplier, round_chs)

    in_chs = width(stem_chs)
    arch = []
    for stage_idx, (t, c, n, s) in enumerate(stages):
        # The authors keep the last stage at least 1280 wide so thin models keep a rich embedding.
        out_chs = width(c, max(1.0, width_mult)) if stage_idx == len(stages) - 1 else width(c)
        blocks = []
        for i in range(n):
            stride = s if i == 0 else 1
            changes_width = in_chs != out_chs
            # A lone stride-1 block keeps both depthwise convs; otherwise a block that changes width has no
            # leading one (it would filter the old, narrower tensor), and at stride 1 no trailing one either.
            keep_both = n == 1 and s == 1
            blocks.append(
                dict(
                    in_chs=in_chs,
                    out_chs=out_chs,
                    reduced_chs=sandglass_reduced_channels(in_chs, out_chs, t),
                    stride=stride,
                    dw_in=t == 2 or not changes_width or keep_both,
                    dw_out=t == 2 or not changes_width or keep_both or stride == 2,
                )
            )
            in_chs = out_chs
        arch.append(blocks)
    return width(stem_chs), arch


class MobileNeXt(nn.Module):
    """A stem conv, stages of sandglass blocks, global pooling and a linear classifier.

    Args:
        width_mult: Channel width multiplier of the MobileNeXt family (ignored when ``arch`` is given).
        identity_multiplier: Fraction alpha in (0, 1] of channels that receive each shortcut.
        shortcut: Use residual connections (False gives the paper's no-shortcut ablation).
        num_classes: Classifier outputs; 0 gives a model without classifier.
        in_chans: Input image channels.
        drop_rate: Dropout before the classifier (the authors' model uses 0.2).
        drop_path_rate: Stochastic depth, growing linearly from 0 to this rate over the blocks.
        global_pool: Pooling type of :class:`timm.layers.SelectAdaptivePool2d`; ``""`` returns the unpooled map.
        arch: Stem width and per-block arguments; default :func:`mobilenext_arch` at ``width_mult``.
        head_norm: Normalize + activate the last feature map before pooling (EfficientNet's ``bn1``).
        padding: Conv padding, ``""`` (symmetric) or ``"same"`` (TensorFlow's).
        act_layer: Activation (ReLU6 as in the paper).
        norm_layer: Normalization layer.
        device, dtype: Where and in which type to create the tensors (timm's factory arguments).
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        identity_multiplier: float = 1.0,
        shortcut: bool = True,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        arch: Arch | None = None,
        head_norm: bool = False,
        padding: str = "",
        act_layer: type[nn.Module] = nn.ReLU6,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        with factory_device(device):
            self._build(width_mult, identity_multiplier, shortcut, num_classes, in_chans, drop_rate, drop_path_rate,
                        global_pool, arch, head_norm, padding, act_layer, norm_layer)  # fmt: skip
        if dtype is not None:
            self.to(dtype=dtype)

    def _build(
        self,
        width_mult: float,
        identity_multiplier: float,
        shortcut: bool,
        num_classes: int,
        in_chans: int,
        drop_rate: float,
        drop_path_rate: float,
        global_pool: str,
        arch: Arch | None,
        head_norm: bool,
        padding: str,
        act_layer: type[nn.Module],
        norm_layer: type[nn.Module],
    ) -> None:
        stem_chs, stages = arch if arch is not None else mobilenext_arch(width_mult)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        norm_act = dict(norm_layer=norm_layer, act_layer=act_layer)

        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, padding=padding, **norm_act)
        # "stem.act": timm's feature extraction flattens the stem (a Sequential) into its layers
        self.feature_info = [dict(num_chs=stem_chs, reduction=2, module="stem.act")]
        self.stage_ends = [0]  # per feature_info entry: how many stages run before it is taken

        num_blocks = sum(len(stage) for stage in stages)
        block_idx, reduction = 0, 2
        stage_modules = []
        for stage_idx, stage in enumerate(stages):
            blocks = []
            for args in stage:
                dpr = drop_path_rate * block_idx / num_blocks
                block = SandglassBlock(
                    **args,
                    shortcut=shortcut,
                    identity_multiplier=identity_multiplier,
                    padding=padding,
                    drop_path_rate=dpr,
                    **norm_act,
                )
                blocks.append(block)
                block_idx += 1
            stage_modules.append(nn.Sequential(*blocks))
            reduction *= stage[0]["stride"]
            next_stride = stages[stage_idx + 1][0]["stride"] if stage_idx + 1 < len(stages) else 2
            if next_stride > 1:  # a feature map is exposed at the last block of each resolution
                if self.feature_info[-1]["reduction"] == reduction:  # a stride-1 stage right after the stem
                    self.feature_info.pop()
                    self.stage_ends.pop()
                out_chs = stage[-1]["out_chs"]
                self.feature_info.append(dict(num_chs=out_chs, reduction=reduction, module=f"blocks.{stage_idx}"))
                self.stage_ends.append(stage_idx + 1)
        self.blocks = nn.Sequential(*stage_modules)

        self.num_features = self.head_hidden_size = num_features = stages[-1][-1]["out_chs"]
        self.head_norm = get_norm_act_layer(norm_layer, act_layer)(num_features) if head_norm else nn.Identity()
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.classifier = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # The authors' (and torchvision MobileNetV2's) initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # --- timm model interface -------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^blocks\.(\d+)" if coarse else r"^blocks\.(\d+)\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for ``num_classes`` (0: none), on this model's device, dtype and mode; ``global_pool``
        ``None`` keeps the pooling, ``""`` removes it (the output is then the feature map)."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        reference = self.stem.conv.weight
        self.classifier = (
            nn.Linear(self.num_features, num_classes, device=reference.device, dtype=reference.dtype)
            if num_classes > 0
            else nn.Identity()
        )
        self.global_pool.train(self.training)
        self.classifier.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward that also returns the feature maps of ``feature_info`` (stem, then one per resolution)."""
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt must be 'NCHW', got {output_fmt!r}.")
        take_indices, max_index = feature_take_indices(len(self.stage_ends), indices)
        take_stages = {self.stage_ends[i] for i in take_indices}
        last_stage = self.stage_ends[max_index] if stop_early else len(self.blocks)

        x = self.stem(x)
        intermediates = [x] if 0 in take_stages else []
        for stage_idx, stage in enumerate(self.blocks[:last_stage], start=1):
            x = stage(x)
            if stage_idx in take_stages:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.stage_ends), indices)
        self.blocks = self.blocks[: self.stage_ends[max_index]]
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x, flatten=True)
        else:
            x = self.blocks(x)
        return self.head_norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --- registration ---------------------------------------------------------------------------------------
def _create_mobilenext(variant: str, pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    return build_model_with_cfg(
        MobileNeXt,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True),
        **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    # No URL: weights never download. Load local ones with pretrained_cfg_overlay=dict(file=PATH).
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv",
        "classifier": "classifier",
        "paper_ids": "arXiv:2007.02269",
        "paper_name": "Rethinking Bottleneck Structure for Efficient Mobile Network Design",
        "origin_url": "https://github.com/zhoudaquan/rethinking_bottleneck_design",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({name: _cfg() for name in [*PAPER_FIGURES, *ABLATIONS]})


@register_model
def mobilenext_140(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """MobileNeXt-1.4: 6.1M params, 590M MAdds, 76.1% ImageNet top-1 in the paper."""
    return _create_mobilenext("mobilenext_140", pretrained, **{"width_mult": 1.4, **kwargs})


@register_model
def mobilenext_100(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """MobileNeXt-1.0: 3.5M params, 300M MAdds, 74.02% ImageNet top-1 in the paper."""
    return _create_mobilenext("mobilenext_100", pretrained, **{"width_mult": 1.0, **kwargs})


@register_model
def mobilenext_075(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """MobileNeXt-0.75: 2.5M params, 210M MAdds, 72.0% ImageNet top-1 in the paper."""
    return _create_mobilenext("mobilenext_075", pretrained, **{"width_mult": 0.75, **kwargs})


@register_model
def mobilenext_050(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """MobileNeXt-0.5: 2.1M params, 110M MAdds, 67.7% ImageNet top-1 in the paper."""
    return _create_mobilenext("mobilenext_050", pretrained, **{"width_mult": 0.5, **kwargs})


@register_model
def mobilenext_035(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """MobileNeXt-0.35: 1.8M params, 80M MAdds, 64.7% ImageNet top-1 in the paper."""
    return _create_mobilenext("mobilenext_035", pretrained, **{"width_mult": 0.35, **kwargs})


@register_model
def mobilenext_100_half_id(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """MobileNeXt-1.0, identity tensor multiplier 1/2 (paper: same accuracy, lower latency)."""
    return _create_mobilenext("mobilenext_100_half_id", pretrained, **{**ABLATIONS["mobilenext_100_half_id"], **kwargs})


@register_model
def mobilenext_100_sixth_id(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """MobileNeXt-1.0, identity tensor multiplier 1/6 (the paper's smallest alpha)."""
    return _create_mobilenext(
        "mobilenext_100_sixth_id", pretrained, **{**ABLATIONS["mobilenext_100_sixth_id"], **kwargs}
    )


@register_model
def mobilenext_100_no_shortcut(pretrained: bool = False, **kwargs: Any) -> MobileNeXt:
    """MobileNeXt-1.0 without any shortcut: the paper's ablation of the residual path."""
    return _create_mobilenext(
        "mobilenext_100_no_shortcut", pretrained, **{**ABLATIONS["mobilenext_100_no_shortcut"], **kwargs}
    )
