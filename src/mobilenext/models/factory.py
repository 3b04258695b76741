"""Models by name: ``create_model``, ``list_models`` and ``get_model`` (build, optionally with weights)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import timm
from torch import nn

from ..errors import CheckpointError, UnknownModelError

__all__ = ["create_model", "get_model", "list_models"]

# timm module names (last component of the module path) that hold our registrations.
_MODEL_MODULES = ("mobilenext", "efficient", "baselines", "network")

# Models registered outside ``mobilenext.models``: name -> the module whose import registers it, imported on
# first request rather than at the top of this module, because NAS builds on the models (its operations use
# the sandglass block): a module-level import would point the layers up, and the models and the engine must
# not need NAS to import. (The package root imports it, so ``import mobilenext`` registers everything.)
_REGISTERED_ELSEWHERE = {"darts_cifar": "..nas.network"}


def _register_elsewhere(names: Iterable[str] = _REGISTERED_ELSEWHERE) -> None:
    for name in names:
        if name in _REGISTERED_ELSEWHERE:
            importlib.import_module(_REGISTERED_ELSEWHERE[name], __package__)


def list_models(pattern: str = "") -> list[str]:
    """Names of the models this package registers, optionally filtered by a wildcard ``pattern``."""
    _register_elsewhere()
    return timm.list_models(pattern, module=list(_MODEL_MODULES))


def _check_model_name(name: str) -> None:
    _register_elsewhere([name])
    if timm.is_model(name):
        return
    known = list(dict.fromkeys(list_models() + timm.list_models()))  # ours first, no duplicates
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "`mobilenext models` lists ours."
    raise UnknownModelError(f"unknown model {name!r}; {hint}")


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with a clear error for an unknown name."""
    _check_model_name(name)
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def get_model(name: str, pretrained: bool | str | Path = False, **kwargs: Any) -> nn.Module:
    """Build ``name`` and, when ``pretrained`` is a path, load those weights (mmpretrain's ``get_model``).

    Weights are never downloaded. Any layout :func:`~mobilenext.models.checkpoint.load_checkpoint` accepts
    works. Without ``num_classes`` the model takes the checkpoint's number of classes; with a different one it
    keeps a fresh classifier (fine-tuning). A ``mobilenext train`` checkpoint of the same model also gives the
    model its run's input settings and class names (``pretrained_cfg``), so ``inference_model`` prepares
    images as the run did.
    """
    if pretrained is True:
        raise CheckpointError(
            "pretrained=True would download weights, which this package never does; pass the path of a checkpoint."
        )
    if not pretrained:
        return create_model(name, **kwargs)
    from .checkpoint import build_with_weights  # checkpoint.py builds its models with this module's create_model

    return build_with_weights(name, pretrained, kwargs, fine_tune=True)
