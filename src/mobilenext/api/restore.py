"""From a file to a ready model: which task a file belongs to, and that task's reading of it.

Every task owns what its files mean (a :class:`~mobilenext.engine.checkpoint.TaskFiles` in its ``files``
module); this module asks them in turn and hands the file to the one that claims it, so that each command
that takes a checkpoint (predict, validate, export, convert, the ``detect`` commands, ``inference_model``,
``get_model``) reads it the same way, and a file of another task is one sentence saying what it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import check_output_file
from ..engine.checkpoint import Restored, TaskFiles
from ..errors import CheckpointError, ConfigError
from ..models.checkpoint import CheckpointFile, read_checkpoint
from ..models.factory import create_model

__all__ = ["convert", "get_model", "restore_model", "task_files"]

TASKS = {"classification": "a classifier", "detection": "a detector"}  # what a command can ask for
LAYOUTS = ("timm", "official")  # ours, the authors'


def task_files() -> list[TaskFiles]:
    """Every task's file semantics, in the order they are asked: classification last, as it takes every file
    no other task claims (plain weights of any origin)."""
    from ..classification.files import ClassificationFiles
    from ..detection.files import DetectionFiles
    from ..nas.files import SearchFiles

    return [DetectionFiles(), SearchFiles(), ClassificationFiles()]


def _owner(file: CheckpointFile) -> TaskFiles:
    for files in task_files():
        if files.owns(file):
            return files
    task = file.contents.get("task")
    raise CheckpointError(
        f"{file.path} is a checkpoint of task {task!r}, which this version of mobilenext does not know."
    )


def restore_model(
    checkpoint: str | Path | None,
    model: str | None = None,
    task: str | None = None,
    use_ema: bool = True,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
) -> Restored:
    """The model a file holds, with its weights, in eval mode on ``device``, and what the file says about it:
    the one reader of every file we take (our training checkpoints, ``mobilenext convert``'s safetensors,
    timm's weights and train.py checkpoints, the authors' classifiers and detectors).

    ``task`` (``classification``, ``detection``, or ``None`` for the file's own) refuses a file of another
    task in one sentence. A classifier is ``model``, else the one the file names, else the one registered model
    its tensor shapes fit; its class count is ``num_classes``, else the checkpoint's; ``use_ema`` picks its
    EMA weights where present (:attr:`Restored.ema` says whether it did). Without a checkpoint, ``model`` has
    random weights and its own (timm) input settings. ``model``, ``use_ema`` and ``num_classes`` apply to
    classifiers only: a detector is the one its file describes.
    """
    if task not in (None, *TASKS):
        raise ConfigError(f"unknown task {task!r}; choose {' or '.join(TASKS)}.")
    if checkpoint is None:
        if task == "detection":
            raise ConfigError("a detector needs its checkpoint, the one `mobilenext detect train` wrote.")
        if not model:
            raise ConfigError("pass --model or --checkpoint: there is no model to build.")
        from ..classification.files import random_weights

        restored = random_weights(model, num_classes)
    else:
        file = read_checkpoint(checkpoint)
        owner = _owner(file)
        if task is not None and owner.task != task:
            raise owner.not_mine(file, TASKS[task])
        options = {"model": model, "num_classes": num_classes, "use_ema": use_ema}
        restored = owner.restore(file, **(options if owner.task == "classification" else {}))
    restored.model.to(device)
    return restored


def get_model(name: str, pretrained: bool | str | Path = False, **kwargs: Any) -> nn.Module:
    """Build ``name`` and, when ``pretrained`` is a path, load those weights (mmpretrain's ``get_model``).

    Weights are never downloaded. Any file :func:`restore_model` reads works. Without ``num_classes`` the model
    takes the checkpoint's number of classes; with a different one it keeps a fresh classifier (fine-tuning).
    A ``mobilenext train`` checkpoint of the same model also gives the model its run's input settings and
    class names (``pretrained_cfg``), so ``inference_model`` prepares images as the run did.
    """
    if pretrained is True:
        raise CheckpointError(
            "pretrained=True would download weights, which this package never does; pass the path of a checkpoint."
        )
    if not pretrained:
        return create_model(name, **kwargs)
    from ..classification.files import ClassificationFiles

    file = read_checkpoint(pretrained)
    owner = _owner(file)
    if owner.task != "classification":
        raise owner.not_mine(file, TASKS["classification"])
    return ClassificationFiles().restore(file, model=name, kwargs=kwargs, fine_tune=True).model.train()


def convert(
    src: str | Path,
    dst: str | Path,
    to: str = "timm",
    model: str | None = None,
    use_ema: bool = True,
    overwrite: bool = True,
) -> str:
    """Convert a checkpoint to our layout (``to="timm"``) or the authors' (``"official"``): a classifier to a
    safetensors file whose metadata names its model and its run's settings, a detector to a ``.pth`` their code
    or ours reads. The model is recognised from the file unless ``model`` is given. Returns the model's name.
    With ``overwrite=False`` an existing ``dst`` is an error, found before any work."""
    if to not in LAYOUTS:
        raise CheckpointError(f"unknown layout {to!r}; choose 'timm' (ours) or 'official' (the authors').")
    file = read_checkpoint(src)  # first: a missing or damaged source is the one thing to say
    owner = _owner(file)
    check_output_file(dst, overwrite, owner.converted_suffix, [src])
    options = {"model": model, "use_ema": use_ema} if owner.task == "classification" else {}
    return owner.convert(file, dst, to, overwrite, **options)
