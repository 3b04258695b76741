"""Whether a training batch can fit, estimated before any work: a typo such as ``--img-size 100000`` is one
sentence, not minutes of silent swapping followed by the kernel's out-of-memory killer.

The estimate is a lower bound: the outputs of every leaf module for one image, measured on the meta device (shapes
only, no memory, no arithmetic), times the batch, in float32. Training keeps at least those for the backward pass,
so a run refused here could never have fitted; one let through may still need more (gradients, the optimiser,
the framework's workspace)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["activation_elements", "available_bytes", "check_activation_memory"]


def activation_elements(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Elements output by ``module``'s leaf modules for one input of ``input_shape`` (C, H, W)."""
    probe = copy.deepcopy(module).to("meta").eval()
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        outputs = output if isinstance(output, list | tuple) else [output]
        total += sum(t.numel() for t in outputs if isinstance(t, torch.Tensor))

    for leaf in probe.modules():
        if not any(True for _ in leaf.children()):
            leaf.register_forward_hook(count)
    with torch.no_grad():
        probe(torch.empty(1, *input_shape, device="meta"))
    return total


def available_bytes(device: torch.device) -> int | None:
    """Free memory of the device: the GPU's, or the host's available memory (Linux); None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def _gib(count: float) -> str:
    return f"{count / 2**30:,.1f} GiB"


def check_activation_memory(
    module: nn.Module, input_shape: Sequence[int], batch_size: int, flags: str, device: torch.device
) -> None:
    """One sentence when the activations of a ``batch_size`` batch alone exceed the device's free memory."""
    free = available_bytes(device)
    if free is None:
        return
    need = activation_elements(module, input_shape) * batch_size * 4
    if need > free:
        size = "x".join(map(str, input_shape[1:]))
        raise ConfigError(
            f"a batch of {batch_size} images of {size} px needs at least {_gib(need)} of activations to train, "
            f"more than the {_gib(free)} free on {device}; lower {flags}."
        )
