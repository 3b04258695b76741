"""DDP set-up from the variables ``torchrun`` exports; a plain run is world size 1 and needs no special path."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "local_device", "all_reduce_sum", "barrier", "cleanup"]

_owned_group = False  # whether init_distributed created the process group (cleanup destroys only that one)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def local_device(kind: str | None, local_rank: int = 0) -> torch.device:
    """This process's device: ``kind`` (cuda, cpu, mps, ...) or cuda when available; one GPU per local rank."""
    kind = kind or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(kind)


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (nccl on GPU, gloo on CPU) and pick this rank's device.
    A group the caller created already is used as it is."""
    global _owned_group
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    target = local_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
        _owned_group = True
    return DistInfo(rank, local_rank, world_size, target)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place); a no-op on one process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    global _owned_group
    if _owned_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _owned_group = False
