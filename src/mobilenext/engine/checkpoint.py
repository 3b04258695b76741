"""Checkpoints: the training format the engine writes, and the contract by which a task says what its files mean.

A training checkpoint is a dict of tensors and plain Python values only (no pickled objects), so it loads
safely and its ``state_dict`` / ``state_dict_ema`` entries load anywhere a timm checkpoint does. It is tagged
with its format, its task and its model (:func:`save_checkpoint`); :func:`read_training_record` reads those
tags back for whoever must decide what a file is.

That decision belongs to the tasks: each contributes a :class:`TaskFiles` (which files are its own, how one
becomes a ready model, how it converts) and gets a :class:`Restored` out of it. The engine defines the
contract and knows no task by name; ``mobilenext.api`` asks every task in turn.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .._io import atomic_path, is_temp_file
from ..errors import CheckpointError
from ..models.checkpoint import CheckpointFile, read_checkpoint, safety_refusal

__all__ = [
    "BEST",
    "FORMAT",
    "LAST",
    "READABLE_FORMATS",
    "Restored",
    "TaskFiles",
    "TrainingRecord",
    "load_training_checkpoint",
    "read_training_record",
    "remove_stale_temp_files",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "write_checkpoint",
]

LAST, BEST = "last.pth", "best.pth"
FORMAT = "mobilenext-train-2"  # 2: tagged by the engine (task, identity, rounds, history); 1: before it
READABLE_FORMATS = (FORMAT, "mobilenext-train-1")


def save_checkpoint(state: dict[str, Any], path: str | Path, overwrite: bool = True) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        write_checkpoint(state, tmp)


def write_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``state`` tagged with the training format, written to ``path`` as it is (callers make it atomic)."""
    torch.save({"format": FORMAT, **state}, path)


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
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        hint = "; start from its weights with --pretrained instead" if action == "resume" else ""
        raise CheckpointError(
            f"cannot {action} from {path}: it is a weights file, not a mobilenext training checkpoint{hint}."
        )
    return state


@dataclass(frozen=True)
class TrainingRecord:
    """What a training checkpoint of ours says about its run, besides the weights."""

    task: str | None  # the task tag (None: format 1 of `mobilenext train`, which had none)
    model: str | None  # the registered model (detection: detector) it trained
    args: dict[str, Any]  # the run's settings
    classes: list[str]  # class names in label order (detection: without the background)
    data_config: dict[str, Any]  # classification: img_size, crop_pct, interpolation, mean, std of its evaluation
    model_kwargs: dict[str, Any]  # keyword arguments beyond the name (e.g. a NAS network's genotype)
    metrics: dict[str, Any]  # the summary row logged when it was saved


def read_training_record(contents: dict[str, Any]) -> TrainingRecord | None:
    """The record of a checkpoint file's top-level dict, or ``None`` when it is not a training checkpoint of ours
    (a weights file, timm's or the authors' checkpoint, whose ``args`` are an ``argparse.Namespace``)."""
    args = contents.get("args")
    if contents.get("format") not in READABLE_FORMATS and not isinstance(args, dict):
        return None
    args = args if isinstance(args, dict) else {}
    task = contents.get("task") or contents.get("kind")  # format 1: search checkpoints said kind
    model = contents.get("model") or args.get("model")  # format 2 names it at the top, format 1 in its args
    return TrainingRecord(
        task=str(task) if task else None,
        model=model if isinstance(model, str) else None,
        args=args,
        classes=[str(c) for c in contents.get("classes") or []],
        data_config=dict(contents.get("data_config") or {}),
        model_kwargs=dict(contents.get("model_kwargs") or {}),
        metrics=dict(contents.get("metrics") or {}),
    )


@dataclass
class Restored:
    """A model restored from a file, in eval mode, with everything the file says about how to use it."""

    model: nn.Module
    task: str  # classification or detection
    name: str  # the registered model or detector name
    source: str  # what the file is, for messages ("a mobilenext train checkpoint", "the authors' checkpoint", ...)
    path: Path | None = None  # the file (None: random weights)
    ema: bool = False  # the EMA weights were loaded (the file holds them and they were asked for)
    classes: list[str] = field(default_factory=list)  # class names in label order (detection: no background)
    # How the file says an image becomes the input (img_size, crop_pct, interpolation, mean, std; detection:
    # img_size, mean, std); {} when it says nothing and the model's own (timm) settings apply.
    data_config: dict[str, Any] = field(default_factory=dict)
    origin: str = ""  # where the input settings and class names come from ("the checkpoint's training run", ...)
    test_settings: dict[str, Any] = field(default_factory=dict)  # detection: score_thresh, nms_thresh, ...
    args: dict[str, Any] = field(default_factory=dict)  # the training run's settings ({} for a weights file)
    metrics: dict[str, Any] = field(default_factory=dict)  # what the run logged when it saved the file


class TaskFiles:
    """One task's checkpoint semantics: which files are its own, how one becomes a :class:`Restored` model, how it
    converts between layouts. A task subclasses it in its ``files`` module; ``mobilenext.api`` asks each task
    in turn (:meth:`owns`) and hands the file to the one that claims it."""

    task: ClassVar[str]  # the task tag its training checkpoints carry
    noun: ClassVar[str]  # what one of its files is, inside a sentence ("an SSDLite detector")
    commands: ClassVar[str]  # the commands that take its files, for the sentence refusing one elsewhere
    converted_suffix: ClassVar[str] = ""  # the kind of file :meth:`convert` writes

    def owns(self, file: CheckpointFile) -> bool:
        raise NotImplementedError

    def describe(self, file: CheckpointFile) -> str:
        """What ``file`` is, inside a sentence."""
        return self.noun

    def restore(self, file: CheckpointFile, **options: Any) -> Restored:
        """The file's model, in eval mode on the CPU, and what the file says about it."""
        raise NotImplementedError

    def convert(self, file: CheckpointFile, dst: str | Path, layout: str, overwrite: bool, **options: Any) -> str:
        """Write the file's model to ``dst`` in ``layout`` (``timm``: ours, ``official``: the authors'); returns
        the model's name."""
        raise CheckpointError(f"{file.path} is {self.describe(file)}, which has no other layout to convert to.")

    def write_converted(
        self, dst: str | Path, overwrite: bool, write: Callable[[Path], None], expected: Restored
    ) -> None:
        """Write a conversion with ``write(path)`` atomically, and read it back before it takes ``dst``'s name: it
        must restore to ``expected``'s model, weights (bit for bit) and settings, else nothing is written."""
        with atomic_path(dst, overwrite=overwrite) as tmp:
            write(tmp)
            back = self.restore(read_checkpoint(tmp))
            want, got = expected.model.state_dict(), back.model.state_dict()
            same = want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
            fields = ("name", "classes", "data_config", "test_settings")
            differ = [f for f in fields if getattr(back, f) != getattr(expected, f)] + ([] if same else ["weights"])
            if differ:
                raise CheckpointError(
                    f"converting to {dst} did not read back as the same model (its {', '.join(differ)} differ); "
                    "nothing was written."
                )

    def not_mine(self, file: CheckpointFile, wanted: str) -> CheckpointError:
        """The one sentence for one of this task's files given where ``wanted`` (e.g. "a classifier") was asked."""
        return CheckpointError(f"{file.path} is {self.describe(file)}, not {wanted}; use {self.commands} with it.")


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
