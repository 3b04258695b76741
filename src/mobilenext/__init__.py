"""MobileNeXt: the sandglass block and the MobileNeXt family, native to timm.

``import mobilenext`` registers every model with timm (``timm.create_model("mobilenext_100")`` works) and
offers the public API below; training, detection, NAS and deployment load when used.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import (
    models,  # noqa: F401  (registers the MobileNeXt family, its EfficientNet variants and baselines)
    nas,  # noqa: F401  (registers darts_cifar; the NAS code itself loads on first use)
)
from .api import Restored, convert, get_model, inference_model, predict, restore_model, validate
from .errors import CheckpointError, ConfigError, ImageError, MobileNeXtError, UnknownModelError
from .models import MobileNeXt, SandglassBlock, count_madds, count_params, load_checkpoint
from .models.factory import create_model, list_models

try:  # one source: pyproject.toml's version, as installed
    __version__ = _metadata.version("mobilenext")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ImageError",
    "MobileNeXt",
    "MobileNeXtError",
    "Restored",
    "SandglassBlock",
    "UnknownModelError",
    "convert",
    "count_madds",
    "count_params",
    "create_model",
    "get_model",
    "inference_model",
    "list_models",
    "load_checkpoint",
    "predict",
    "restore_model",
    "validate",
]
