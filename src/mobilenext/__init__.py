"""MobileNeXt: the sandglass block and the MobileNeXt family, native to timm.

``import mobilenext`` registers every variant with timm, so ``timm.create_model("mobilenext_100")`` works.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import models  # noqa: F401  (registers the models with timm)
from .errors import CheckpointError, ConfigError, ImageError, MobileNeXtError, UnknownModelError
from .inference import inference_model
from .models import MobileNeXt, SandglassBlock, count_madds, count_params, load_checkpoint
from .models.checkpoint import (  # noqa: F401  (importable from the root, as they were before)
    classifier_classes,
    read_state_dict,
    read_training_record,
    to_model_layout,
    use_training_record,
)
from .models.factory import create_model, get_model, list_models
from .nas import network as _nas_network  # noqa: F401  (registers darts_cifar, so timm.create_model knows it)

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
