"""State-dict I/O, like timm's ``_helpers.py``: read a checkpoint file safely, find its weights, map the authors'
layout onto ours, load into a model and explain every mismatch in one sentence.

Files are read with ``weights_only=True`` (or as safetensors), never fully unpickled. Our own checkpoints,
timm's, and the authors' ``.pth.tar`` files (plain, or under ``state_dict`` / ``state_dict_ema``, keys
possibly prefixed ``module.``) all load. What a file *means* (which model, which preprocessing, which task)
is decided above this layer, by the task that owns the file (``mobilenext.api.restore_model``).
"""

from __future__ import annotations

import argparse
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._compat import safe_globals
from .._io import atomic_path
from ..errors import CheckpointError
from .factory import create_model, list_models
from .official import is_official_layout, official_to_ours

__all__ = [
    "EMA_KEYS",
    "CheckpointFile",
    "check_state_dict",
    "checkpoint_filter_fn",
    "classifier_classes",
    "classifier_keys",
    "keep_model_classifier",
    "load_checkpoint",
    "matching_models",
    "read_checkpoint",
    "read_state_dict",
    "safety_refusal",
    "save_safetensors",
    "to_model_layout",
    "write_safetensors",
]

# Where a checkpoint keeps its weights, in the order timm's ``load_state_dict`` looks for them; the first two
# only when EMA weights are wanted.
EMA_KEYS = ("state_dict_ema", "model_ema")
_WEIGHTS_KEYS = ("state_dict", "model")


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file, read once: ``contents`` is its top-level dict (for a bare state_dict, the tensors
    themselves), ``metadata`` the string metadata of a safetensors file (``{}`` for a PyTorch file)."""

    path: Path
    contents: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)

    def weights_key(self, use_ema: bool = True) -> str:
        """The entry holding the weights: ``state_dict_ema`` / ``model_ema`` (if ``use_ema``), ``state_dict``,
        ``model``, or ``""`` when the file is a bare state_dict."""
        keys = (*(EMA_KEYS if use_ema else ()), *_WEIGHTS_KEYS)
        return next((k for k in keys if isinstance(self.contents.get(k), dict)), "")

    def state_dict(self, use_ema: bool = True) -> dict[str, torch.Tensor]:
        """The weights (see :meth:`weights_key`), without a DataParallel ``module.`` prefix."""
        key = self.weights_key(use_ema)
        weights = self.contents[key] if key else self.contents
        if not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise CheckpointError(f"checkpoint {self.path} does not contain a state_dict of tensors.")
        return {k.removeprefix("module."): v for k, v in weights.items()}


def read_checkpoint(path: str | Path, weights_only: bool = True) -> CheckpointFile:
    """Read a ``.safetensors``, ``.pth`` or ``.pth.tar`` file without unpickling code (memory-mapped where the
    format allows), with one sentence for a missing, damaged or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist{' (it is a folder)' if path.is_dir() else ''}.")
    try:
        if path.suffix == ".safetensors":
            return _read_safetensors(path)
        contents = _torch_load(path, weights_only)
    except CheckpointError:
        raise
    except Exception as e:  # torch.load and safetensors raise many types for damaged files
        raise CheckpointError(f"checkpoint {path} {_unreadable(path, e)}.") from None
    if not isinstance(contents, dict):
        raise CheckpointError(f"checkpoint {path} does not contain a state_dict of tensors.")
    return CheckpointFile(path, contents)


def _torch_load(path: Path, weights_only: bool) -> Any:
    # The authors' checkpoints (saved by an early timm) and timm's train.py keep the run's args as an
    # argparse.Namespace: a plain record, which runs no code when rebuilt.
    with safe_globals([argparse.Namespace]):
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # files in torch's legacy (pre-1.6) format cannot be memory-mapped
                raise
            return torch.load(path, map_location="cpu", weights_only=weights_only)


def _read_safetensors(path: Path) -> CheckpointFile:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safetensors file, not a dict)
        return CheckpointFile(path, tensors, dict(f.metadata() or {}))


def _unreadable(path: Path, error: BaseException) -> str:
    """What to say about a file that could not be read (the end of a sentence naming it)."""
    if (refusal := safety_refusal(path, error)) is not None:
        return refusal
    if isinstance(error, pickle.UnpicklingError) or "PytorchStreamReader" in str(error):  # a damaged pickle or zip
        return f"is truncated or corrupt ({type(error).__name__})"
    detail = str(error).splitlines()[0] if str(error) else "no details"
    return f"cannot be read: it is truncated or not a PyTorch/safetensors file ({type(error).__name__}: {detail})"


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


def read_state_dict(path: str | Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint file (``state_dict_ema`` if ``use_ema`` and present, else ``state_dict`` or
    ``model``, else the file's own tensors), without a DataParallel ``module.`` prefix."""
    return read_checkpoint(path).state_dict(use_ema)


def to_model_layout(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename the authors' layout to ``model``'s keys when needed; other state_dicts pass unchanged."""
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if is_official_layout(state_dict) and hasattr(model, "blocks") and hasattr(model, "stem"):
        state_dict = official_to_ours(state_dict, model)
    return state_dict


def classifier_keys(model: nn.Module) -> set[str]:
    """The state-dict keys of ``model``'s classifier (timm's ``pretrained_cfg["classifier"]``)."""
    name = getattr(model, "pretrained_cfg", {}).get("classifier", "classifier")
    return {f"{name}.weight", f"{name}.bias"}


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def matching_models(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Our registered models whose tensors, classifier aside, have exactly the shapes in ``state_dict``
    (our layout or the authors')."""
    matches = []
    for name in list_models():
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            candidate = create_model(name)
        classifier = classifier_keys(candidate)
        renamed = to_model_layout(state_dict, candidate)
        have = {k: _shape(v) for k, v in renamed.items() if k not in classifier}
        want = {k: _shape(v) for k, v in candidate.state_dict().items() if k not in classifier}
        if have == want:
            matches.append(name)
    return matches


def check_state_dict(state_dict: dict[str, torch.Tensor], model: nn.Module, check_classifier: bool = True) -> None:
    """Raise :class:`CheckpointError` naming what does not fit, and the likely cause."""
    expected = model.state_dict()
    classifier = classifier_keys(model)
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
    weight = next(k for k in sorted(classifier_keys(model)) if k.endswith("weight"))
    return state_dict[weight].shape[0] if weight in state_dict else None


def keep_model_classifier(
    state_dict: dict[str, torch.Tensor], model: nn.Module, *, warn: bool = True
) -> dict[str, torch.Tensor]:
    """A ``filter_fn`` for fine-tuning on other classes: a classifier of another size in ``state_dict`` is
    replaced by ``model``'s own (freshly initialised) one, with a warning; everything else loads as usual."""
    expected = model.state_dict()
    other = [k for k in classifier_keys(model) if k in state_dict and _shape(state_dict[k]) != _shape(expected[k])]
    if other and warn:
        warnings.warn("the checkpoint's classifier has another number of classes: it was not loaded.", stacklevel=3)
    return {**state_dict, **{k: expected[k] for k in other}}


def load_checkpoint(
    model: nn.Module,
    checkpoint_path: str | Path | dict[str, torch.Tensor],
    use_ema: bool = True,
    device: str | torch.device = "cpu",
    strict: bool = True,
    remap: bool = False,
    filter_fn: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]] | None = None,
    weights_only: bool = True,
):
    """timm's ``load_checkpoint`` with its keywords, for our, timm's and the authors' files: load the weights of
    ``checkpoint_path`` (a file, or a state_dict) into ``model``; returns ``model.load_state_dict``'s result.

    The authors' layout is renamed to ours; with ``strict``, a mismatch is one sentence naming the tensors
    and the likely cause (another width, another number of classes). ``filter_fn(state_dict, model)`` edits
    the weights (in ``model``'s layout) before they load: :func:`keep_model_classifier` for fine-tuning on other
    classes; ``remap`` loads by
    position (timm's ``remap_state_dict``). ``device`` is accepted for timm's signature: the weights are read
    to the CPU and copied into ``model``'s tensors wherever they are.
    """
    del device  # the copy into the model's own tensors places them
    if isinstance(checkpoint_path, dict):
        state_dict = {k.removeprefix("module."): v for k, v in checkpoint_path.items()}
    else:
        state_dict = read_checkpoint(checkpoint_path, weights_only=weights_only).state_dict(use_ema)
    if remap:
        from timm.models import remap_state_dict

        state_dict = remap_state_dict(state_dict, model)
    else:
        state_dict = to_model_layout(state_dict, model)
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    if strict:
        check_state_dict(state_dict, model)
    return model.load_state_dict(state_dict, strict=strict)


def save_safetensors(
    state_dict: dict[str, torch.Tensor],
    path: str | Path,
    metadata: dict[str, str] | None = None,
    overwrite: bool = True,
):
    """Write ``state_dict`` as safetensors, atomically (a crash never leaves a half-written file)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        write_safetensors(state_dict, tmp, metadata)


def write_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None):
    """``state_dict`` as safetensors at ``path``, as it is (callers make it atomic: :func:`save_safetensors`)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(path), metadata=metadata)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: accept the authors' layout and explain a mismatching backbone.

    The classifier is left to timm, which drops it when ``num_classes`` differs from the weights.
    """
    state_dict = to_model_layout(state_dict, model)
    check_state_dict(state_dict, model, check_classifier=False)
    return state_dict
