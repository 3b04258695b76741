"""The authors' released layout and the key mapping to ours.

The authors' released code (github.com/yitu-opensource/MobileNeXt, ``codebase/models/mnext.py``) keeps
every block as one flat ``nn.Sequential`` called ``conv`` of conv / BN / ReLU6 modules, numbered by
position, so the same layer has a different index depending on which depthwise convs the block has. Our
blocks name their layers (``conv_dw1``, ``conv_reduce``, ``conv_expand``, ``conv_dw2``);
:func:`official_module_names` pairs the two by walking our model. (Their module itself, as a reference, is
:class:`~mobilenext.models.official_model.OfficialMobileNeXt`.)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from .layers import ConvNormAct

__all__ = ["is_official_layout", "official_module_names", "official_to_ours", "ours_to_official"]


def is_official_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """True when the keys follow the authors' ``features.N...`` layout."""
    return any(k.startswith("features.") for k in state_dict)


def official_module_names(model: nn.Module) -> Iterator[tuple[str, str]]:
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


def official_to_ours(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an authors'-layout state_dict to ``model``'s keys; unknown keys pass through unchanged."""
    return _rename(state_dict, {official: ours for ours, official in official_module_names(model)})


def ours_to_official(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The inverse of :func:`official_to_ours`."""
    return _rename(state_dict, dict(official_module_names(model)))
