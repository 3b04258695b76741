"""MobileNeXt: the sandglass block and the MobileNeXt family, native to timm.

``import mobilenext`` registers every variant with timm, so ``timm.create_model("mobilenext_100")`` works.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import timm
from torch import nn

from . import models  # noqa: F401  (registers the models with timm)
from .errors import CheckpointError, ConfigError, ImageError, MobileNeXtError, UnknownModelError
from .inference import inference_model
from .models import MobileNeXt, SandglassBlock, count_madds, count_params, load_checkpoint
from .models.checkpoint import (
    classifier_classes,
    read_state_dict,
    read_training_record,
    to_model_layout,
    use_training_record,
)
from .nas import network as _nas_network  # noqa: F401  (registers darts_cifar)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ImageError",
    "MobileNeXt",
    "MobileNeXtError",
    "SandglassBlock",
    "UnknownModelError",
    "count_madds",
    "count_params",
    "create_model",
    "get_model",
    "inference_model",
    "list_models",
    "load_checkpoint",
]

# timm module names (last component of the module path) that hold our registrations.
_MODEL_MODULES = ("mobilenext", "efficient", "baselines", "network")


def list_models(pattern: str = "") -> list[str]:
    """Names of the models this package registers, optionally filtered by a wildcard ``pattern``."""
    return timm.list_models(pattern, module=list(_MODEL_MODULES))


def _check_model_name(name: str) -> None:
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

    Weights are never downloaded. Any layout :func:`load_checkpoint` accepts works. Without ``num_classes``
    the model takes the checkpoint's number of classes; with a different one it keeps a fresh classifier
    (fine-tuning). A ``mobilenext train`` checkpoint of the same model also gives the model its run's input
    settings and class names (``pretrained_cfg``), so ``inference_model`` prepares images as the run did.
    """
    if pretrained is True:
        raise CheckpointError(
            "pretrained=True would download weights, which this package never does; pass the path of a checkpoint."
        )
    record = read_training_record(pretrained) if pretrained else {}
    same_model = record.get("args", {}).get("model") == name
    if same_model:  # e.g. a NAS network's genotype; the caller's own kwargs win
        kwargs = {**record.get("model_kwargs", {}), **kwargs}
    model = create_model(name, **kwargs)
    if pretrained:
        state_dict = to_model_layout(read_state_dict(pretrained), model)
        num_classes = classifier_classes(state_dict, model)
        if "num_classes" not in kwargs and num_classes not in (None, model.num_classes):
            model.reset_classifier(num_classes)  # a fine-tuned checkpoint: take its number of classes
        load_checkpoint(model, state_dict, reset_classifier="num_classes" in kwargs)
        if same_model:  # the run's input size, normalisation and class names become the model's
            use_training_record(model, record)
    return model
