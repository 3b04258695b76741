"""Errors that mean "the user asked for something wrong", each with one sentence that names the fix.

The CLI prints these as a single line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["MobileNeXtError", "ConfigError", "UnknownModelError", "CheckpointError", "ImageError"]


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
