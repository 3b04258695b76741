"""Parameter and multiply-add counts, the two figures the paper's tables report."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_madds", "summarize_model"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (BN running statistics excluded, as in the paper)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_madds(model: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224)) -> int:
    """Multiply-adds of one image through convolutions and linear layers, the convention of the paper.

    Counted by PyTorch's FLOP counter (2 FLOPs per multiply-add), which sees only conv and matmul ops:
    BN, activations, pooling and the shortcut adds are free here, as in the authors' figures.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, *input_size))
    model.train(was_training)
    return counter.get_total_flops() // 2


def summarize_model(
    name: str, paper_figures: dict[str, dict[str, float]] | None = None, authors_top1: dict[str, float] | None = None
) -> dict:
    """One row of ``mobilenext models``: measured params and MAdds at the model's input size, beside the
    paper's figures and the best top-1 of the authors' logged runs, where known."""
    import timm

    model = timm.create_model(name)
    input_size = tuple(model.pretrained_cfg["input_size"])
    paper = (paper_figures or {}).get(name, {})
    return {
        "model": name,
        "params": count_params(model),
        "madds_m": round(count_madds(model, input_size) / 1e6, 1),
        "input": "x".join(map(str, input_size[1:])),
        "paper_params_m": paper.get("params_m"),
        "paper_madds_m": paper.get("madds_m"),
        "paper_top1": paper.get("top1"),
        "authors_top1": (authors_top1 or {}).get(name),
    }
