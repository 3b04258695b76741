"""Errors that mean "the user asked for something wrong", each with one sentence that names the fix.

The CLI prints these as a single line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "MobileNeXtError",
    "ConfigError",
    "UnknownModelError",
    "CheckpointError",
    "ImageError",
    "MissingDependencyError",
    "RunTerminated",
    "TrainingDiverged",
    "require",
]


class MobileNeXtError(Exception):
    """Base class of user-facing errors."""


class ConfigError(MobileNeXtError, ValueError):
    """An invalid model or run setting (width, identity multiplier, ...)."""


class UnknownModelError(MobileNeXtError, ValueError):
    """A model name that no registry knows."""


class CheckpointError(MobileNeXtError, RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


class ImageError(MobileNeXtError, ValueError):
    """A file that cannot be decoded as an image."""


class MissingDependencyError(MobileNeXtError, ImportError):
    """An optional package (an extra such as ``[onnx]`` or ``[tflite]``) that is not installed."""


class TrainingDiverged(MobileNeXtError, RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class RunTerminated(KeyboardInterrupt):
    """SIGTERM arrived during a run (a scheduler, ``kill``, torchrun stopping its workers): handled like Ctrl-C,
    so the atomic writes clean up and the run's log says why it stopped."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or say which extra of mobilenext installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise MissingDependencyError(
            f"{package} is not installed ({error}); install it with: pip install 'mobilenext[{extra}]'"
        ) from None
