"""What a run leaves behind besides checkpoints: ``args.yaml``, ``summary.csv``, ``log.txt``, and curve plots.

``summary.csv`` starts with the authors' columns (``epoch,train_loss,eval_loss,eval_prec1,eval_prec5``) so
our runs and theirs plot and diff alike.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from .._io import atomic_path
from .._plot import pyplot, save_png
from ..data.reference import REFERENCE_RUNS, read_summary, reference_summary

__all__ = ["AUTHORS_COLUMNS", "write_summary", "read_summary", "write_args", "log_file", "plot_runs"]

AUTHORS_COLUMNS = ("epoch", "train_loss", "eval_loss", "eval_prec1", "eval_prec5")


def write_summary(path: Path, rows: list[dict[str, Any]], leading: Sequence[str] = AUTHORS_COLUMNS) -> None:
    """Rewrite the whole file (it is small) so a kill mid-write never leaves a torn row. ``leading`` columns
    come first (by default the authors' classification columns), then every other key in order of appearance."""
    columns = list(leading) + [k for row in rows for k in row if k not in leading]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(columns)))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def write_args(path: Path, settings: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(settings, sort_keys=False))


@contextlib.contextmanager
def log_file(path: Path | None) -> Iterator[None]:
    """Copy the ``mobilenext`` log to ``path`` (appending, so a resumed run keeps its history) while inside;
    ``None`` logs nowhere extra. The handler leaves with the block, so a second run in the same process
    does not write into the first one's log."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("mobilenext")
    logger.addHandler(handler)
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:  # a library caller that set up no logging still gets a full log
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
        handler.close()


def plot_runs(run_dirs: list[Path], output: Path, reference: str | None = None) -> Path:
    """Loss and top-1 curves of ``run_dirs`` (and optionally one of the authors' runs) as a PNG."""
    plt = pyplot()
    curves = [(run.name, read_summary(run / "summary.csv" if run.is_dir() else run)) for run in run_dirs]
    if reference:
        curves.append((f"authors: {REFERENCE_RUNS.get(reference, reference)}", reference_summary(reference)))
    fig, (ax_loss, ax_top1) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, rows in curves:
        epochs = [r["epoch"] for r in rows]
        style = "--" if label.startswith("authors") else "-"
        (line,) = ax_loss.plot(epochs, [r["train_loss"] for r in rows], style, label=f"{label} train")
        ax_loss.plot(epochs, [r["eval_loss"] for r in rows], style, color=line.get_color(), alpha=0.5,
                     label=f"{label} eval")
        ax_top1.plot(epochs, [r["eval_prec1"] for r in rows], style, color=line.get_color(), label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (train: with label smoothing)")
    ax_top1.set(xlabel="epoch", ylabel="top-1 (%)", title="held-out top-1")
    for ax in (ax_loss, ax_top1):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_png(fig, output)
