"""Classification evaluation: loss, top-1, top-5 and speed, summed exactly over DDP ranks."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.amp import autocast
from ..engine.distributed import all_reduce_sum
from ..engine.progress import Progress

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """``loss`` (plain cross-entropy, as the authors logged), ``top1``, ``top5`` in percent, ``images``,
    ``img_per_sec``, and the number of ``skipped`` unreadable images (left out of the metrics)."""
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, correct@1, correct@5, images, unreadable
    skipped: list[str] = []
    bar = Progress(len(loader), "eval", enabled=progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for images, targets, problems in loader:
        skipped += problems
        sums[4] += len(problems)
        if len(targets) == 0:
            continue
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(images).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices == targets[:, None]
        sums[:4] += torch.stack(
            [
                F.cross_entropy(logits, targets, reduction="sum").double(),
                top[:, 0].sum().double(),
                top.any(dim=1).sum().double(),
                torch.tensor(len(targets), dtype=torch.float64, device=device),
            ]
        )
        bar.update(len(targets))
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    all_reduce_sum(sums)
    loss, correct1, correct5, count, unreadable = sums.tolist()
    count = max(count, 1.0)
    return {
        "loss": loss / count,
        "top1": 100.0 * correct1 / count,
        "top5": 100.0 * correct5 / count,
        "images": int(count),
        "img_per_sec": count / max(seconds, 1e-9),
        "skipped": int(unreadable),
        "skipped_names": skipped,  # this rank's; the count is over all ranks
    }
