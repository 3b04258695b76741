"""What a detector's file means: ``mobilenext detect train`` checkpoints and the authors' released detectors,
restored with their classes, input size, normalisation and test-time settings, and converted between our
layout and theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_path
from ..engine.checkpoint import Restored, TaskFiles, read_training_record, save_checkpoint
from ..errors import CheckpointError
from ..models.checkpoint import CheckpointFile
from .authors import is_authors_detector, load_authors_detector, to_authors_layout
from .model import AUTHORS_SIZE, create_detector
from .settings import ssd_keywords

__all__ = ["DetectionFiles", "restore_detector"]


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
        if is_authors_detector(file.contents):
            model, config = load_authors_detector(file.contents["model"], str(file.path))
            args = {"data": None, "pipeline": "authors", "dataset": config.dataset, "test_set": config.test_set}
            name = f"ssdlite320_{model.backbone_name}"
            return _restored(file, model, name, "the authors' SSDLite detector", config.classes, AUTHORS_SIZE, args)
        contents = file.contents
        name, classes, size = (_entry(file, key) for key in ("model", "classes", "size"))
        args = dict(contents.get("args") or {})
        loss = contents.get("loss", "softmax")
        model = create_detector(
            name,
            len(classes) + 1,
            size=size,
            boxes=contents.get("boxes", "voc"),
            loss=loss,
            **ssd_keywords({**args, "loss": loss}),
        )
        try:
            model.load_state_dict(_entry(file, "state_dict"))
        except RuntimeError as e:
            first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
            raise CheckpointError(f"{file.path} does not fit {name} as its record describes it ({first}).") from None
        return _restored(file, model, name, "a `mobilenext detect train` checkpoint", classes, size, args)

    def convert(self, file: CheckpointFile, dst: str | Path, layout: str, overwrite: bool, **options: Any) -> str:
        """The authors' layout (``official``: ``{"model": ...}``, as their code saves it) or ours (``timm``: a
        checkpoint every ``mobilenext detect`` command reads)."""
        restored = self.restore(file)
        model = restored.model
        if layout == "official":
            with atomic_path(dst, overwrite=overwrite) as tmp:
                torch.save({"model": to_authors_layout(model.state_dict(), model)}, tmp)
        else:
            record = {
                "task": self.task,
                "model": restored.name,
                "classes": list(restored.classes),
                "size": restored.data_config["img_size"],
                "boxes": model.boxes,
                "loss": model.loss,
                "args": restored.args,
            }
            save_checkpoint({**record, "state_dict": model.state_dict()}, dst, overwrite=overwrite)
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


def _entry(file: CheckpointFile, key: str) -> Any:
    if key not in file.contents:
        raise CheckpointError(f"{file.path} is a detection checkpoint without its {key!r} entry: it is damaged.")
    return file.contents[key]


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
