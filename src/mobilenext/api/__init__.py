"""The inference layer: one way from a file to a ready model, above every task (mmpretrain's ``apis``).

:func:`restore_model` reads any file we take (our training checkpoints, ``mobilenext convert``'s safetensors,
timm's weights and train.py checkpoints, the authors' classifiers and detectors) by asking each task whether
the file is its own; :func:`get_model`, :func:`inference_model`, :func:`predict`, :func:`convert`,
:func:`validate`, :func:`export_checkpoint` and :func:`plot_runs` build on it.
"""

from ..engine.checkpoint import Restored
from .commands import export_checkpoint, plot_runs, validate
from .inference import class_names, describe_inputs, inference_model, predict
from .restore import convert, get_model, restore_model, task_files

__all__ = [
    "Restored",
    "class_names",
    "convert",
    "describe_inputs",
    "export_checkpoint",
    "get_model",
    "inference_model",
    "plot_runs",
    "predict",
    "restore_model",
    "task_files",
    "validate",
]
