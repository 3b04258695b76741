"""What a detector's file means: ``mobilenext detect train`` checkpoints and the authors' released detectors,
restored with their classes, input size, normalisation and test-time settings, and converted between our
layout and theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine.checkpoint import Restored, TaskFiles, read_training_record, write_checkpoint
from ..errors import CheckpointError
from ..models.checkpoint import CheckpointFile
from .authors import (
    check_authors_configuration,
    is_authors_detector,
    load_authors_detector,
    load_authors_weights,
    to_authors_layout,
)
from .model import AUTHORS_SIZE, create_detector
from .settings import ssd_keywords

__all__ = ["DetectionFiles", "RECORD_KEY", "restore_detector"]

# Where a file converted to the authors' layout keeps our record of the detector (their CheckPointer.load
# returns such entries unused).
RECORD_KEY = "mobilenext"


class DetectionFiles(TaskFiles):
    task = "detection"
    noun = "an SSDLite detector"
    commands = "`mobilenext detect eval`, `detect predict` or `detect export`"
    converted_suffix = ".pth"

    def owns(self, file: CheckpointFile) -> bool:
        if is_authors_detector(file.contents):
            return True
        record = read_training_record(file.contents)
        return record is not None and record.task == self.task

    def describe(self, file: CheckpointFile) -> str:
        return "the authors' SSDLite detector" if is_authors_detector(file.contents) else self.noun

    def restore(self, file: CheckpointFile, **options: Any) -> Restored:
        contents = file.contents
        if not is_authors_detector(contents):  # ours: `detect train` or `convert --to timm`
            return _from_record(
                file, contents, _entry(file, contents, "state_dict"), "a `mobilenext detect train` checkpoint"
            )
        if isinstance(contents.get(RECORD_KEY), dict):  # theirs by layout, ours by origin: `convert --to official`
            return _from_record(file, contents[RECORD_KEY], contents["model"], "a detector in the authors' layout")
        model, config = load_authors_detector(contents["model"], str(file.path))
        args = {"data": None, "pipeline": "authors", "dataset": config.dataset, "test_set": config.test_set}
        name = f"ssdlite320_{model.backbone_name}"
        return _restored(file, model, name, "the authors' SSDLite detector", config.classes, AUTHORS_SIZE, args)

    def convert(self, file: CheckpointFile, dst: str | Path, layout: str, overwrite: bool, **options: Any) -> str:
        """Ours (``timm``: a checkpoint every ``mobilenext detect`` command reads) or the authors' layout
        (``official``: ``{"model": ...}`` as their code saves it, which their ``CheckPointer`` loads). Either
        keeps everything that decides the numbers: detector, classes, input size, default boxes, loss and so
        scoring, normalisation and test-time settings (in their layout under ``"mobilenext"``, an entry their
        code returns unused)."""
        restored = self.restore(file)
        model = restored.model
        record = {
            "model": restored.name,
            "classes": list(restored.classes),
            "size": restored.data_config["img_size"],
            "boxes": model.boxes,
            "loss": model.loss,
            "args": {**restored.args, **restored.test_settings},
        }
        if layout == "official":
            check_authors_configuration(model, restored.name)
            theirs = {"model": to_authors_layout(model.state_dict(), model), RECORD_KEY: record}
            self.write_converted(dst, overwrite, lambda path: torch.save(theirs, path), restored)
        else:
            ours = {"task": self.task, **record, "state_dict": model.state_dict()}
            self.write_converted(dst, overwrite, lambda path: write_checkpoint(ours, path), restored)
        return restored.name


def restore_detector(path: str | Path) -> Restored:
    """The detector in ``path`` (ours or the authors'), for the ``detect`` commands; any other file is one
    sentence saying what it is."""
    from ..models.checkpoint import read_checkpoint

    file = read_checkpoint(path)
    files = DetectionFiles()
    if files.owns(file):
        return files.restore(file)
    record = read_training_record(file.contents)
    what = f"a {record.task or 'classification'} checkpoint" if record is not None else "a classification weights file"
    raise CheckpointError(
        f"{file.path} is {what}, not a detector; detect commands need one written by `mobilenext detect train` "
        "or the authors' SSDLite."
    )


def _entry(file: CheckpointFile, record: dict[str, Any], key: str) -> Any:
    if key not in record:
        raise CheckpointError(f"{file.path} is a detection checkpoint without its {key!r} entry: it is damaged.")
    return record[key]


def _from_record(file: CheckpointFile, record: dict[str, Any], weights: dict[str, Any], source: str) -> Restored:
    """The detector a record of ours describes (``detect train``'s checkpoint, or what ``convert`` kept), with
    ``weights`` in our layout, or in the authors' when the file is in theirs."""
    name, classes, size = (_entry(file, record, key) for key in ("model", "classes", "size"))
    args = dict(record.get("args") or {})
    loss = record.get("loss", "softmax")
    model = create_detector(
        name, len(classes) + 1, size=size, boxes=record.get("boxes", "voc"), loss=loss,
        pipeline=args.get("pipeline", "torchvision"), **ssd_keywords({**args, "loss": loss}),
    )  # fmt: skip
    if is_authors_detector(file.contents):
        load_authors_weights(model, weights, str(file.path))
    else:
        try:
            model.load_state_dict(weights)
        except RuntimeError as e:
            first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
            raise CheckpointError(f"{file.path} does not fit {name} as its record describes it ({first}).") from None
    return _restored(file, model, name, source, classes, size, args)


def _restored(
    file: CheckpointFile, model: nn.Module, name: str, source: str, classes: Any, size: int, args: dict[str, Any]
) -> Restored:
    transform = model.transform
    return Restored(
        model=model.eval(),
        task="detection",
        name=name,
        source=source,
        path=file.path,
        classes=list(classes),
        data_config={"img_size": size, "mean": list(transform.image_mean), "std": list(transform.image_std)},
        origin="the authors' config" if source.startswith("the authors'") else "the checkpoint's training run",
        test_settings={
            "score_thresh": model.score_thresh,
            "nms_thresh": model.nms_thresh,
            "detections_per_img": model.detections_per_img,
        },
        args=args,
    )
