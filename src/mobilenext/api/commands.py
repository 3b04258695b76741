"""What a user does with a file or a run, from its path: validate a checkpoint, export it, plot runs. Each reads
the file through :func:`~mobilenext.api.restore_model` and hands the task's own code a ready model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .restore import restore_model

__all__ = ["export_checkpoint", "plot_runs", "validate"]


def validate(
    checkpoint: str | Path | None,
    model: str | None = None,
    use_ema: bool = True,
    num_classes: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Top-1, top-5, loss and speed of a classifier's checkpoint (or of ``model`` with random weights) on a
    dataset: its training run's, unless ``options`` name another (:func:`mobilenext.classification.validate.
    validate` lists them: data, dataset, split, img_size, crop_pct, interpolation, batch_size, ...)."""
    from ..classification.validate import validate as validate_restored

    restored = restore_model(checkpoint, model, task="classification", use_ema=use_ema, num_classes=num_classes)
    return validate_restored(restored, fit_classes=checkpoint is None and num_classes is None, **options)


def export_checkpoint(
    checkpoint: str | Path | None,
    model: str | None = None,
    output: str | Path | None = None,
    fmt: str = "onnx",
    num_classes: int | None = None,
    **options: Any,
):
    """Export a classifier's checkpoint (or ``model`` with random weights) to ``fmt``, calibrated and checked on
    its run's data (:func:`mobilenext.deploy.export.export_restored` lists the ``options``); returns the
    :class:`~mobilenext.deploy.export.ExportReport`."""
    from ..deploy.export import EXPORT_FORMATS, export_restored
    from ..errors import ConfigError

    if fmt not in EXPORT_FORMATS:  # before reading a checkpoint that may be large
        raise ConfigError(f"unsupported export format {fmt!r}; choose {', '.join(EXPORT_FORMATS)}.")
    restored = restore_model(checkpoint, model, task="classification", num_classes=num_classes)
    return export_restored(restored, output, fmt, **options)


def plot_runs(
    run_dirs: Sequence[str | Path], output: str | Path, reference: str | None = None, overwrite: bool = True
) -> Path:
    """Loss and accuracy curves of ``run_dirs`` (folders or their summary.csv; classification, detection or NAS
    search runs, one kind per plot) and optionally one of the authors' classification runs, as a PNG."""
    from ..classification.train import ClassificationTask
    from ..detection.engine import DetectionTask
    from ..engine.records import plot_runs as plot
    from ..nas.search import SearchTask

    kinds = [task.curves for task in (ClassificationTask, DetectionTask, SearchTask)]
    return plot(run_dirs, output, kinds, reference=reference, overwrite=overwrite)
