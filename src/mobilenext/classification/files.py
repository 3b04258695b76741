"""What a classifier's file means: which model it holds, with which preprocessing, class names and weights.

Every file a classifier comes in is read here: our training checkpoints (``mobilenext train``, ``nas train``),
the safetensors files ``mobilenext convert`` writes (their metadata carries the run's record), timm's
``train.py`` checkpoints and plain weights (timm's or ours), and the authors' ``.pth.tar`` files. The model
is the one asked for, else the one the file names, else the one registered model its tensor shapes fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from timm.data import ImageNetInfo, resolve_model_data_config
from torch import nn

from ..engine.checkpoint import Restored, TaskFiles, TrainingRecord, read_training_record
from ..errors import CheckpointError, ConfigError
from ..models.checkpoint import (
    EMA_KEYS,
    CheckpointFile,
    classifier_classes,
    keep_model_classifier,
    load_checkpoint,
    matching_models,
    to_model_layout,
    write_safetensors,
)
from ..models.factory import create_model
from ..models.official import is_official_layout, ours_to_official

__all__ = ["ClassificationFiles", "label_names", "random_weights", "restored_classifier"]

RUN_ORIGIN = "the checkpoint's training run"  # where a run's input settings and class names come from

# The safetensors metadata ``mobilenext convert`` writes: strings, and the run's record as JSON.
_RECORD_METADATA = ("args", "classes", "data_config", "model_kwargs", "metrics")


class ClassificationFiles(TaskFiles):
    """Every file that is not another task's: the fallback owner."""

    task = "classification"
    noun = "a classifier"
    commands = "`mobilenext predict`, `validate` or `export`"
    converted_suffix = ".safetensors"

    def owns(self, file: CheckpointFile) -> bool:
        record = _record(file)
        return record is None or record.task in (None, self.task)  # None: format 1, before the tags

    def restore(
        self,
        file: CheckpointFile,
        model: str | None = None,
        kwargs: dict[str, Any] | None = None,
        num_classes: int | None = None,
        use_ema: bool = True,
        fine_tune: bool = False,
    ) -> Restored:
        """The classifier in ``file``: ``model`` (else the file's own) built with ``kwargs`` and ``num_classes``
        (else the checkpoint's number of classes; another one is an error, or with ``fine_tune`` a fresh
        classifier), with the EMA weights if ``use_ema`` and present."""
        record = _record(file)
        name = model or _named_model(file, record) or _model_by_shapes(file)
        kwargs = dict(kwargs or {})
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        same_model = record is not None and record.model == name
        if same_model:  # e.g. a NAS network's genotype
            kwargs = {**record.model_kwargs, **kwargs}
        net = create_model(name, **kwargs)
        state_dict = to_model_layout(file.state_dict(use_ema), net)
        stored_classes = classifier_classes(state_dict, net)
        if "num_classes" not in kwargs and stored_classes not in (None, net.num_classes):
            net = create_model(name, **kwargs, num_classes=stored_classes)  # a fine-tuned checkpoint: its classes
        fresh_head = fine_tune and "num_classes" in kwargs
        load_checkpoint(net, state_dict, filter_fn=keep_model_classifier if fresh_head else None)
        return restored_classifier(
            net,
            name,
            source=_source(file, record),
            record=record if same_model else None,
            ema=_holds_ema(file, use_ema),
            timm_args=_timm_args(file),
            path=file.path,
        )

    def convert(
        self,
        file: CheckpointFile,
        dst: str | Path,
        layout: str,
        overwrite: bool,
        model: str | None = None,
        use_ema: bool = True,
    ) -> str:
        """A safetensors file in our (``timm``) or the authors' (``official``) key layout, whose metadata names
        the model and carries what the original said of its run (class names, input settings, the run's
        settings and metrics, which weights), so that every command reads it as it read the original."""
        restored = self.restore(file, model=model, use_ema=use_ema)
        net = restored.model
        state_dict = net.state_dict()
        if layout == "official":
            state_dict = ours_to_official(state_dict, net)
        metadata = {
            "architecture": restored.name,
            "layout": layout,
            "num_classes": str(net.num_classes),
            "weights": "state_dict_ema" if restored.ema else "state_dict",
        }
        record = _record(file)
        same_model = record is not None and record.model == restored.name
        said = {
            "args": restored.args,
            "classes": record.classes if same_model else [],
            "data_config": restored.data_config,  # a run's, or a timm train.py checkpoint's
            "model_kwargs": record.model_kwargs if same_model else {},
            "metrics": restored.metrics,
        }
        metadata.update({key: json.dumps(value) for key, value in said.items() if value})
        self.write_converted(dst, overwrite, lambda path: write_safetensors(state_dict, path, metadata), restored)
        return restored.name


def restored_classifier(
    model: nn.Module,
    name: str,
    source: str,
    record: TrainingRecord | None = None,
    ema: bool = False,
    timm_args: dict[str, Any] | None = None,
    path: Path | None = None,
) -> Restored:
    """``model`` in eval mode with what its file said: a training run's ``record`` makes the run's evaluation
    transform and class names the model's own (its timm ``pretrained_cfg``, which every reader of it then
    follows: ``timm.data.resolve_model_data_config``, predict, export); ``timm_args`` (a timm ``train.py``
    checkpoint's) override the input settings as timm's own evaluation does."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    origin = f"{cfg.get('architecture', name)}'s pretrained_cfg"
    data = (record.data_config if record else {}) or {}
    specified = bool(data)
    if data:
        size = data["img_size"]
        cfg.update(
            input_size=(3, size, size),
            crop_pct=data["crop_pct"],
            interpolation=data["interpolation"],
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
        )
        cfg.pop("test_input_size", None)  # the ImageNet test size of the model's cfg says nothing about this run
        origin = RUN_ORIGIN
    elif overrides := _timm_data_overrides(timm_args or {}):
        if "input_size" in overrides:
            cfg.pop("test_input_size", None)
        cfg.update(overrides)
        origin, specified = "the checkpoint's timm train.py settings", True
    classes = (record.classes if record else []) or []
    if classes and len(classes) == getattr(model, "num_classes", None):
        cfg["label_names"] = list(classes)
    model.pretrained_cfg = model.default_cfg = cfg
    return Restored(
        model=model.eval(),
        task="classification",
        name=name,
        source=source,
        path=path,
        ema=ema,
        classes=label_names(model),
        data_config=_data_config(model) if specified else {},
        origin=origin,
        args=dict(record.args) if record else {},
        metrics=dict(record.metrics) if record else {},
    )


def _timm_data_overrides(args: dict[str, Any]) -> dict[str, Any]:
    """The ``pretrained_cfg`` entries a timm ``train.py`` run set for its evaluation (timm's own
    ``resolve_data_config`` gives its args precedence over the model's cfg: input_size, then img_size)."""
    overrides = {k: args[k] for k in ("crop_pct", "interpolation", "mean", "std") if args.get(k) not in (None, "")}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    if args.get("input_size"):
        overrides["input_size"] = tuple(args["input_size"])
    elif args.get("img_size"):
        overrides["input_size"] = (3, args["img_size"], args["img_size"])
    return overrides


def label_names(model: nn.Module) -> list[str]:
    """Class names in label order: the model's ``pretrained_cfg`` ones, ImageNet's for 1000 classes, else none."""
    names = getattr(model, "pretrained_cfg", {}).get("label_names")
    if names and len(names) == model.num_classes:
        return list(names)
    if model.num_classes == 1000:
        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(1000)]
    return []


def _data_config(model: nn.Module) -> dict[str, Any]:
    """The evaluation transform's settings in our vocabulary (the keys a training checkpoint stores)."""
    cfg = resolve_model_data_config(model)
    return {
        "img_size": cfg["input_size"][-1],
        "crop_pct": cfg["crop_pct"],
        "interpolation": cfg["interpolation"],
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
    }


def _record(file: CheckpointFile) -> TrainingRecord | None:
    """The run's record: a training checkpoint's, or the one ``mobilenext convert`` put in a safetensors file."""
    if file.metadata.get("architecture"):
        try:
            stored = {key: json.loads(file.metadata[key]) for key in _RECORD_METADATA if key in file.metadata}
        except json.JSONDecodeError:
            raise CheckpointError(f"{file.path}: its safetensors metadata is damaged (not JSON).") from None
        return TrainingRecord(
            task="classification",
            model=file.metadata["architecture"],
            args=stored.get("args", {}),
            classes=stored.get("classes", []),
            data_config=stored.get("data_config", {}),
            model_kwargs=stored.get("model_kwargs", {}),
            metrics=stored.get("metrics", {}),
        )
    return read_training_record(file.contents)


def _holds_ema(file: CheckpointFile, use_ema: bool) -> bool:
    """Whether the weights read are EMA weights: a checkpoint's EMA entry, or a converted file made of one (it
    holds those weights only)."""
    return file.weights_key(use_ema) in EMA_KEYS or file.metadata.get("weights") in EMA_KEYS


def _timm_args(file: CheckpointFile) -> dict[str, Any]:
    """The ``args`` of a timm ``train.py`` checkpoint (an ``argparse.Namespace``; the authors' files have one too)."""
    args = file.contents.get("args")
    return dict(vars(args)) if hasattr(args, "__dict__") and not isinstance(args, dict) else {}


def _named_model(file: CheckpointFile, record: TrainingRecord | None) -> str | None:
    """The model a file names: our record's, or a timm train.py checkpoint's ``args.model`` when timm knows it
    (the authors' files name their own code's models, which it does not)."""
    if record is not None and record.model:
        return record.model
    import timm

    named = _timm_args(file).get("model")
    return named if isinstance(named, str) and timm.is_model(named) else None


def _model_by_shapes(file: CheckpointFile) -> str:
    """The one registered model a file's tensor shapes fit."""
    matches = matching_models(file.state_dict())
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(
            f"{file.path} does not name its model and its tensors fit {', '.join(matches)} alike; pass --model."
        )
    raise ConfigError(f"{file.path} does not name its model and fits none of ours by its tensor shapes; pass --model.")


def _source(file: CheckpointFile, record: TrainingRecord | None) -> str:
    if file.metadata.get("architecture"):
        return "a `mobilenext convert` safetensors file"
    if record is not None:
        return "a `mobilenext train` checkpoint"
    weights = file.state_dict(use_ema=False)
    if is_official_layout(weights):
        return "the authors' checkpoint"
    return "a timm train.py checkpoint" if _timm_args(file) else "a weights file"


def random_weights(name: str, num_classes: int | None = None) -> Restored:
    """``name`` with random weights and its own (timm) input settings."""
    net = create_model(name, **({"num_classes": num_classes} if num_classes else {}))
    return restored_classifier(net, name, source="random weights")
