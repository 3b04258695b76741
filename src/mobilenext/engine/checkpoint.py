"""Training checkpoints: everything a resume needs, written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values only (no pickled objects), so it loads safely
and its ``state_dict`` / ``state_dict_ema`` entries load anywhere a timm checkpoint does.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_path, is_temp_file
from ..errors import CheckpointError
from ..models.checkpoint import safety_refusal

__all__ = [
    "FORMAT",
    "LAST",
    "BEST",
    "save_checkpoint",
    "load_training_checkpoint",
    "rng_state",
    "set_rng_state",
    "remove_stale_temp_files",
]

LAST, BEST = "last.pth", "best.pth"
FORMAT = "mobilenext-train-2"  # 2: tagged by the engine (task, identity, rounds, history); 1: before it
_READABLE = (FORMAT, "mobilenext-train-1")


def save_checkpoint(state: dict[str, Any], path: str | Path, overwrite: bool = True) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_training_checkpoint(path: str | Path, action: str = "resume") -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, with one-sentence errors for anything else; ``action``
    says in them what the checkpoint was for."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"cannot {action}: {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if (refusal := safety_refusal(path, e)) is not None:
            raise CheckpointError(f"cannot {action} from {path}: it {refusal}.") from None
        raise CheckpointError(
            f"cannot {action} from {path}: it is truncated or corrupt ({type(e).__name__})."
        ) from None
    if not isinstance(state, dict) or state.get("format") not in _READABLE:
        hint = "; start from its weights with --pretrained instead" if action == "resume" else ""
        raise CheckpointError(
            f"cannot {action} from {path}: it is a weights file, not a mobilenext training checkpoint{hint}."
        )
    return state


def rng_state() -> dict[str, Any]:
    """Every random generator a training step touches, as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def remove_stale_temp_files(folder: Path) -> None:
    """Temp files of a write that a kill interrupted (the real files are intact: writes are atomic)."""
    for tmp in folder.glob(".*"):
        if is_temp_file(tmp):
            tmp.unlink(missing_ok=True)
