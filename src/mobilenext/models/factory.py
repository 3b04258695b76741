"""Models by name: ``create_model`` and ``list_models``, timm's functions restricted to what this package registers
and with one clear sentence for an unknown name. (Building a model *with weights from a file* is
``mobilenext.get_model``, in the inference layer, which knows what every kind of file means.)"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import timm
from torch import nn

from ..errors import UnknownModelError

__all__ = ["create_model", "list_models"]

# The modules (last component of the module path, as timm records it) that register our models: the family,
# its EfficientNet-based variants and baselines here, and NAS's evaluation network (``mobilenext.nas``, which
# the package root imports, so that ``import mobilenext`` registers every model).
_MODEL_MODULES = ("mobilenext", "efficient", "baselines", "nas")


def list_models(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "") -> list[str]:
    """Names of the models this package registers; ``filter`` / ``exclude_filters`` are wildcards, as in
    ``timm.list_models``."""
    return timm.list_models(filter, module=list(_MODEL_MODULES), exclude_filters=exclude_filters)


def _check_model_name(name: str) -> None:
    if timm.is_model(name):
        return
    known = list(dict.fromkeys(list_models() + timm.list_models()))  # ours first, no duplicates
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "list_models() names ours."
    raise UnknownModelError(f"unknown model {name!r}; {hint}")


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with a clear error for an unknown name."""
    _check_model_name(name)
    return timm.create_model(name, pretrained=pretrained, **kwargs)
