"""Mixed precision, the same for every task: float16 on GPU, bfloat16 on CPU (CPUs have no fast float16 matmuls)."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast"]


def autocast(device: torch.device, enabled: bool):
    """``torch.autocast`` in the precision that suits ``device``, or nothing when not ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
