"""Checkpoint I/O: read safely, accept the authors' layout, explain every mismatch in one sentence.

Files are read with ``weights_only=True`` (or as safetensors), never fully unpickled. Our own checkpoints,
timm's, and the authors' ``.pth.tar`` files (plain, or under ``state_dict`` / ``state_dict_ema``, keys
possibly prefixed ``module.``) all load.
"""

from __future__ import annotations

import argparse
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from timm.models import load_state_dict as timm_load_state_dict
from torch import nn

from .._compat import safe_globals
from .._io import atomic_path, check_output_file
from ..errors import CheckpointError, ConfigError
from .factory import create_model, list_models
from .official import is_official_layout, official_to_ours

__all__ = [
    "read_state_dict",
    "to_model_layout",
    "check_state_dict",
    "load_checkpoint",
    "classifier_classes",
    "save_safetensors",
    "checkpoint_filter_fn",
    "convert_checkpoint",
    "matching_models",
    "read_training_record",
    "build_with_weights",
    "restore_model",
    "use_training_record",
]


def read_state_dict(path: str | Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Read a state_dict from a ``.safetensors``, ``.pth`` or ``.pth.tar`` file without unpickling code.

    Training checkpoints are unwrapped (``state_dict_ema`` if ``use_ema`` and present, else ``state_dict``
    or ``model``) and a DataParallel ``module.`` prefix is removed.
    """
    path = Path(path)
    _require_file(path)
    try:
        # The authors' checkpoints (saved by an early timm) keep the training args as an argparse.Namespace.
        with safe_globals([argparse.Namespace]):
            # weights_only explicitly: timm before 1.0.26 and torch before 2.6 default to full unpickling
            state_dict = timm_load_state_dict(str(path), use_ema=use_ema, weights_only=True)
    except Exception as e:  # torch.load and safetensors raise many types for damaged files
        if (refusal := safety_refusal(path, e)) is not None:
            raise CheckpointError(f"checkpoint {path} {refusal}.") from None
        if isinstance(e, pickle.UnpicklingError) or "PytorchStreamReader" in str(e):  # a damaged pickle or zip
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}).") from None
        raise CheckpointError(
            f"checkpoint {path} cannot be read: it is truncated or not a PyTorch/safetensors file "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no details'})."
        ) from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"checkpoint {path} does not contain a state_dict of tensors.")
    return state_dict


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist{' (it is a folder)' if path.is_dir() else ''}.")


def safety_refusal(path: str | Path, error: BaseException) -> str | None:
    """What to say when ``torch.load(weights_only=True)`` refused ``path`` (torch raises ``UnpicklingError`` or,
    since 2.6, a ``RuntimeError`` that advises ``weights_only=False``, advice never to repeat); ``None`` for
    other failures. The weights-only unpickler refuses code-bearing pickles and plain garbage alike; the file's
    first bytes tell them apart (torch's zip archives start ``PK``, pickles with a protocol byte 0x80)."""
    text = str(error).lower()
    if "weights only" not in text and "weights_only" not in text:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        head = b""
    if head == b"PK" or head[:1] == b"\x80":
        return (
            "holds pickled Python objects besides tensors and is not loaded for safety; if you trust its "
            "source, re-save its state_dict with torch.save or as safetensors"
        )
    return "is not a PyTorch or safetensors file"


def to_model_layout(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename the authors' layout to ``model``'s keys when needed; other state_dicts pass unchanged."""
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if is_official_layout(state_dict) and hasattr(model, "blocks") and hasattr(model, "stem"):
        state_dict = official_to_ours(state_dict, model)
    return state_dict


def _classifier_keys(model: nn.Module) -> set[str]:
    name = getattr(model, "pretrained_cfg", {}).get("classifier", "classifier")
    return {f"{name}.weight", f"{name}.bias"}


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def matching_models(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Our registered models whose tensors, classifier aside, have exactly the shapes in ``state_dict``
    (our layout or the authors')."""
    import timm

    matches = []
    for name in list_models():
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            candidate = timm.create_model(name)
        classifier = _classifier_keys(candidate)
        renamed = to_model_layout(state_dict, candidate)
        have = {k: _shape(v) for k, v in renamed.items() if k not in classifier}
        want = {k: _shape(v) for k, v in candidate.state_dict().items() if k not in classifier}
        if have == want:
            matches.append(name)
    return matches


def check_state_dict(state_dict: dict[str, torch.Tensor], model: nn.Module, check_classifier: bool = True) -> None:
    """Raise :class:`CheckpointError` naming what does not fit, and the likely cause."""
    expected = model.state_dict()
    classifier = _classifier_keys(model)
    skip = set() if check_classifier else classifier
    missing = sorted(k for k in expected if k not in state_dict and k not in skip)
    unexpected = sorted(k for k in state_dict if k not in expected and k not in skip)
    wrong_shape = [
        k for k in expected if k in state_dict and k not in skip and _shape(state_dict[k]) != _shape(expected[k])
    ]
    if not (missing or unexpected or wrong_shape):
        return
    name = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    if set(wrong_shape) <= classifier and not (missing or unexpected):
        weight = next(k for k in classifier if k.endswith("weight"))
        ckpt_classes = state_dict[weight].shape[0]
        raise CheckpointError(
            f"the checkpoint's classifier has {ckpt_classes} classes but the model has "
            f"{expected[weight].shape[0]}: create the model with num_classes={ckpt_classes}, or pass another "
            "num_classes to fine-tune with a new classifier."
        )
    problems = []
    if wrong_shape:
        k = wrong_shape[0]
        problems.append(
            f"{len(wrong_shape)} tensors have other shapes (first: {k} is {_shape(state_dict[k])} in the "
            f"checkpoint, {_shape(expected[k])} in the model)"
        )
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    matches = matching_models(state_dict) if wrong_shape else []
    cause = (
        f"the checkpoint fits {' / '.join(matches)}: wrong width?"
        if matches
        else "is it a checkpoint of another model or width?"
    )
    raise CheckpointError(f"checkpoint does not fit {name}: {'; '.join(problems)}; {cause}")


def classifier_classes(state_dict: dict[str, torch.Tensor], model: nn.Module) -> int | None:
    """Number of classes of the classifier in ``state_dict`` (in ``model``'s layout), if it has one."""
    weight = next(k for k in sorted(_classifier_keys(model)) if k.endswith("weight"))
    return state_dict[weight].shape[0] if weight in state_dict else None


def load_checkpoint(
    model: nn.Module,
    checkpoint: str | Path | dict[str, torch.Tensor],
    use_ema: bool = True,
    strict: bool = True,
    reset_classifier: bool = False,
) -> nn.Module:
    """Load a checkpoint file or state_dict (our, timm's or the authors' layout) into ``model``; return it.

    With ``reset_classifier=True`` a classifier of another size in the checkpoint is skipped (the model
    keeps its freshly initialised head), which is what fine-tuning on new classes needs.
    """
    if not isinstance(checkpoint, dict):
        checkpoint = read_state_dict(checkpoint, use_ema=use_ema)
    state_dict = to_model_layout(checkpoint, model)
    if reset_classifier:
        expected = model.state_dict()
        skipped = [
            k
            for k in _classifier_keys(model)
            if k in state_dict and k in expected and _shape(state_dict[k]) != _shape(expected[k])
        ]
        if skipped:
            warnings.warn("the checkpoint's classifier has another number of classes: it was not loaded.", stacklevel=2)
            state_dict.update({k: expected[k] for k in skipped})
    if strict:
        check_state_dict(state_dict, model)
    model.load_state_dict(state_dict, strict=strict)
    return model


def save_safetensors(
    state_dict: dict[str, torch.Tensor],
    path: str | Path,
    metadata: dict[str, str] | None = None,
    overwrite: bool = True,
):
    """Write ``state_dict`` as safetensors, atomically (a crash never leaves a half-written file)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: accept the authors' layout and explain a mismatching backbone.

    The classifier is left to timm, which drops it when ``num_classes`` differs from the weights.
    """
    state_dict = to_model_layout(state_dict, model)
    check_state_dict(state_dict, model, check_classifier=False)
    return state_dict


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    model_name: str | None = None,
    layout: str = "timm",
    use_ema: bool = True,
    overwrite: bool = True,
) -> str:
    """Convert a checkpoint (any accepted layout) to a safetensors file in our (``timm``) or the authors'
    (``official``) layout. The model is recognised from the tensor shapes unless ``model_name`` is given.
    Returns the model name. With ``overwrite=False`` an existing ``dst`` is an error, found before any work."""
    import timm

    from .official import ours_to_official

    if layout not in ("timm", "official"):
        raise CheckpointError(f"unknown layout {layout!r}; choose 'timm' (ours) or 'official' (the authors').")
    state_dict = read_state_dict(src, use_ema=use_ema)  # first: a missing or damaged source is the one thing to say
    check_output_file(dst, overwrite, ".safetensors")
    if Path(src).resolve() == Path(dst).resolve():
        raise CheckpointError(f"{dst} is the checkpoint being converted; write the conversion to another file.")
    if model_name is None:
        matches = matching_models(state_dict)
        if not matches:
            raise CheckpointError(
                f"{src} matches none of our models' tensor shapes; pass --model to see what does not fit."
            )
        model_name = matches[0]
    with torch.device("meta"):
        model = timm.create_model(model_name)
    state_dict = to_model_layout(state_dict, model)
    num_classes = classifier_classes(state_dict, model)
    if num_classes not in (None, model.num_classes):
        with torch.device("meta"):
            model = timm.create_model(model_name, num_classes=num_classes)
    check_state_dict(state_dict, model)
    if layout == "official":
        state_dict = ours_to_official(state_dict, model)
    metadata = {"architecture": model_name, "layout": layout, "num_classes": str(model.num_classes)}
    save_safetensors(state_dict, dst, metadata=metadata, overwrite=overwrite)
    return model_name


# Format tags of the checkpoints ``mobilenext train|detect train|nas search`` write (engine/checkpoint.py).
TRAINING_FORMATS = ("mobilenext-train-1", "mobilenext-train-2")


def _read_dict(path: str | Path) -> dict[str, Any] | None:
    """The file's top-level dict, read weights-only and memory-mapped; ``None`` for anything else (a safetensors
    file, a bare tensor, a damaged file: :func:`read_state_dict` explains the last)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return state if isinstance(state, dict) else None


def _training_record(state: dict[str, Any] | None) -> dict[str, Any]:
    if state is None:
        return {}
    record: dict[str, Any] = {"has_ema": "state_dict_ema" in state}
    args = state.get("args")
    if state.get("format") in TRAINING_FORMATS or isinstance(args, dict):
        args = args if isinstance(args, dict) else {}
        record.update(
            args=args,
            data_config=state.get("data_config", {}),
            metrics=state.get("metrics", {}),
            model_kwargs=state.get("model_kwargs", {}),
            classes=list(state.get("classes") or []),
        )
        model = state.get("model") or args.get("model")  # format 2 names it at the top, format 1 in its args
        if isinstance(model, str):
            record["model"] = model
    task = state.get("task") or state.get("kind")  # search checkpoints of format 1 say kind
    if isinstance(task, str):
        record["task"] = task
    return record


def read_training_record(path: str | Path) -> dict[str, Any]:
    """The run settings stored beside the weights by ``mobilenext train`` ({} for a plain weights file).

    Keys: ``has_ema``; for training checkpoints ``args`` (the run's flags), ``model`` (the model trained),
    ``data_config`` (input size, crop, normalisation), ``classes`` (class names, in label order), ``metrics``
    and ``model_kwargs`` (e.g. the genotype of a NAS network); ``task`` where the checkpoint names it
    (``classification``, ``detection``, ``nas-search``).
    """
    return _training_record(_read_dict(path))


def _refuse_other_tasks(checkpoint: str | Path, record: dict[str, Any]) -> None:
    task = record.get("task")
    if task == "detection":
        raise CheckpointError(
            f"{checkpoint} is a detector (`mobilenext detect train`), not a classifier; use "
            "`mobilenext detect eval|predict|export` with it."
        )
    if task == "nas-search":
        raise CheckpointError(
            f"{checkpoint} is a `nas search` supernet, not a network to run; train its genotype "
            f"with `mobilenext nas train --genotype {Path(checkpoint).parent / 'genotype.json'}` "
            "and use that run's checkpoint."
        )


def _refuse_non_detector(checkpoint: str | Path, state: dict[str, Any] | None) -> None:
    if state is None:
        read_state_dict(checkpoint)  # a missing or damaged file gets its own sentence; plain weights pass
    raise CheckpointError(
        f"{checkpoint} is a classification checkpoint; detect commands need one written by `mobilenext detect train`."
    )


def _recognise_model(checkpoint: str | Path) -> str:
    """The one registered model a plain weights file fits, from its tensor shapes."""
    matches = matching_models(read_state_dict(checkpoint))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(
            f"{checkpoint} does not name its model and its tensors fit {', '.join(matches)} alike; pass --model."
        )
    raise ConfigError(f"{checkpoint} does not name its model and fits none of ours by its tensor shapes; pass --model.")


def use_training_record(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """Make the input settings and class names a checkpoint was trained with the model's own, in timm's
    ``pretrained_cfg``: every reader of it (``timm.data.resolve_model_data_config``, ``predict``, ``export``)
    then prepares images exactly as the run's evaluation did and names classes as its dataset did."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    data = record.get("data_config") or {}
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
    classes = record.get("classes") or []
    if classes and len(classes) == getattr(model, "num_classes", None):
        cfg["label_names"] = list(classes)
    model.pretrained_cfg = model.default_cfg = cfg
    return model


def build_with_weights(
    name: str,
    checkpoint: str | Path,
    kwargs: dict[str, Any],
    use_ema: bool = True,
    fine_tune: bool = False,
    record: dict[str, Any] | None = None,
) -> nn.Module:
    """Build classifier ``name`` with ``kwargs`` and load ``checkpoint`` into it (any accepted layout): the one
    path of :func:`restore_model` and :func:`~mobilenext.models.factory.get_model`.

    A training checkpoint of the same model adds its model settings (``kwargs`` win) and makes its run's input
    settings and class names the model's (:func:`use_training_record`). Without ``num_classes`` in ``kwargs``
    the model takes the checkpoint's number of classes; another one is an error, or with ``fine_tune`` a fresh
    classifier. ``record``: the checkpoint's :func:`read_training_record`, when the caller has it.
    """
    if record is None:
        record = read_training_record(checkpoint)
        _refuse_other_tasks(checkpoint, record)
    same_model = record.get("model") == name
    if same_model:  # e.g. a NAS network's genotype
        kwargs = {**record.get("model_kwargs", {}), **kwargs}
    model = create_model(name, **kwargs)
    state_dict = to_model_layout(read_state_dict(checkpoint, use_ema=use_ema), model)
    num_classes = classifier_classes(state_dict, model)
    if "num_classes" not in kwargs and num_classes not in (None, model.num_classes):
        model = create_model(name, **kwargs, num_classes=num_classes)  # a fine-tuned checkpoint: its classes
    load_checkpoint(model, state_dict, reset_classifier=fine_tune and "num_classes" in kwargs)
    if same_model:
        use_training_record(model, record)
    return model


def restore_model(
    checkpoint: str | Path | None,
    model: str | None = None,
    use_ema: bool = True,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    task: str | None = "classification",
) -> tuple[nn.Module, dict[str, Any]]:
    """The model a checkpoint holds, with its weights, on ``device`` in eval mode, and its training record: the
    one loader for inference (resuming training is :func:`mobilenext.engine.checkpoint.load_training_checkpoint`).

    ``task`` (``classification``, ``detection``, or ``None`` for the checkpoint's own) refuses, in one sentence,
    a checkpoint of another task. A classifier is ``model``, else the one a training checkpoint names, else the
    one model whose tensor shapes the file fits; its class count is ``num_classes``, else
    the checkpoint's; it gets its run's input settings and class names (:func:`use_training_record`). Without a
    checkpoint it has random weights and its own (timm) input settings. A detector (``mobilenext detect train``)
    is the one its checkpoint names, and its record is the whole checkpoint (``model``, ``classes``, ``size``,
    ``args``, ...); ``model``, ``use_ema`` and ``num_classes`` apply to classifiers only.
    """
    if task not in ("classification", "detection", None):
        raise ConfigError(f"unknown task {task!r}; choose classification or detection.")
    state = _read_dict(checkpoint) if checkpoint else None
    if state is not None:
        # Imported here: detection builds on the models, so a module-level import would point the layers up.
        from ..detection.model import is_authors_detector, load_authors_detector

        if is_authors_detector(state):  # a checkpoint of the authors' detection code
            if task == "classification":
                raise CheckpointError(f"{checkpoint} is the authors' SSDLite detector, not a classifier; use "
                                      "`mobilenext detect eval|predict|export` with it.")  # fmt: skip
            net, record = load_authors_detector(state["model"], str(checkpoint))
            return net.to(device).eval(), record
    record = _training_record(state)
    found = record.get("task", "classification")
    if checkpoint and (task == "classification" or found == "nas-search"):
        _refuse_other_tasks(checkpoint, record)
    if task == "detection" and found != "detection":
        if not checkpoint:
            raise ConfigError("a detector needs its checkpoint, the one `mobilenext detect train` wrote.")
        _refuse_non_detector(checkpoint, state)
    if found == "detection":
        # Imported here: detection builds on the models, so a module-level import would point the layers up.
        from ..detection.model import create_detector, inference_settings

        settings = inference_settings({"loss": state.get("loss", "softmax"), **(state.get("args") or {})})
        classes = len(state["classes"]) + 1
        net = create_detector(
            state["model"],
            classes,
            size=state["size"],
            boxes=state.get("boxes", "voc"),
            loss=state.get("loss", "softmax"),
            **settings,
        )
        net.load_state_dict(state["state_dict"])
        return net.to(device).eval(), state
    name = model or record.get("model") or (_recognise_model(checkpoint) if checkpoint else None)
    if not name:
        raise ConfigError("pass --model or --checkpoint: there is no model to build.")
    kwargs = {"num_classes": num_classes} if num_classes else {}
    if checkpoint:
        net = build_with_weights(name, checkpoint, kwargs, use_ema=use_ema, record=record)
    else:
        net = create_model(name, **kwargs)
    record["model"] = name
    return net.to(device).eval(), record


def checkpoint_task(path: str | Path) -> str | None:
    """``detection`` for a detector (``mobilenext detect train``'s or the authors'), else the task the file's
    training record names (``classification``, ``nas-search``), else ``None``."""
    state = _read_dict(path)
    if state is None:
        return None
    from ..detection.model import is_authors_detector  # here: detection builds on the models

    return "detection" if is_authors_detector(state) else _training_record(state).get("task")
