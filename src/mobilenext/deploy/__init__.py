"""Deployment: the inference form of a model (BN folded into convs); export and benchmarks follow."""

from .fuse import fuse

__all__ = ["fuse"]
