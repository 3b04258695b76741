"""What we need from timm and torch that their public APIs do not give, owned here, in one place.

Nothing in the package imports a private name (``timm.models._*``, ``torch.*._*``); where the public API
falls short, the few lines are written here, with a test per supported version
(``tests/test_timm_contract.py``). Each entry says what it replaces.
"""

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["SqueezeExcite", "factory_device", "feature_take_indices", "graph_capture", "safe_globals"]


class SqueezeExcite(nn.Module):
    """EfficientNet-style squeeze-excite on a block's output: global mean, 1x1 reduce, activation, 1x1 expand,
    sigmoid gate. The key names (``conv_reduce``, ``conv_expand``) are those of the authors' efficient models
    and of timm's EfficientNet block (``timm.models._efficientnet_blocks.SqueezeExcite``, private);
    ``timm.layers.SqueezeExcite`` is another module with other keys."""

    def __init__(self, in_chs: int, rd_channels: int, act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(in_chs, rd_channels, 1, bias=True)
        self.act1 = act_layer(inplace=True)
        self.conv_expand = nn.Conv2d(rd_channels, in_chs, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * self.gate(scale)


def feature_take_indices(num_features: int, indices: int | list[int] | None = None) -> tuple[list[int], int]:
    """Which of ``num_features`` feature maps to return, and the last one needed: ``None`` all, an int the last
    n, a list those indices (negative from the end). timm's semantics (``timm.models._features``, private)."""
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f"last-n ({indices}) is out of range (1 to {num_features})")
        take = [num_features - indices + i for i in range(indices)]
    else:
        take = []
        for i in indices:
            index = num_features + i if i < 0 else i
            if not 0 <= index < num_features:
                raise ValueError(f"feature index {index} is out of range (0 to {num_features - 1})")
            take.append(index)
    return take, max(take)


def graph_capture(x: torch.Tensor) -> bool:
    """Whether the forward is being captured rather than run: autograd, fx (``x`` a Proxy), jit tracing,
    torch.compile or torch.export (TorchScript: guard the call with ``torch.jit.is_scripting()``). Replaces
    ``torch.fx._symbolic_trace.is_fx_tracing`` (private)."""
    return (
        torch.is_grad_enabled()
        or isinstance(x, torch.fx.Proxy)
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or _is_exporting()
    )


def _is_exporting() -> bool:
    # torch.compiler.is_exporting is public from torch 2.5; under 2.4 torch.export also runs through dynamo,
    # where is_compiling() is already true.
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting()) if is_exporting is not None else False


@contextlib.contextmanager
def factory_device(device: str | torch.device | None) -> Iterator[None]:
    """Create a model's tensors directly on ``device`` (``"meta"`` included), as timm's factory ``device=``
    argument asks, with any timm: newer timm layers take ``device=``, older ones do not."""
    with torch.device(device) if device is not None else contextlib.nullcontext():
        yield


def safe_globals(classes: list[type]) -> contextlib.AbstractContextManager:
    """Let ``torch.load(weights_only=True)`` rebuild ``classes`` inside the block.

    ``torch.serialization.safe_globals`` is the context manager from torch 2.5; torch 2.4 has only the
    process-wide ``add_safe_globals``, so there the classes stay allowed after the block (we allow only
    plain records such as ``argparse.Namespace``, which run no code when rebuilt)."""
    scoped = getattr(torch.serialization, "safe_globals", None)
    if scoped is not None:
        return scoped(classes)
    torch.serialization.add_safe_globals(classes)
    return contextlib.nullcontext()
