"""What a run leaves behind besides checkpoints: ``args.yaml``, ``summary.csv``, ``log.txt``, and curve plots.

Each task says which columns its ``summary.csv`` leads with and how its curves are drawn (:class:`Curves`, on
its :class:`~mobilenext.engine.runner.Task`); this module writes and draws them, knowing no task by name.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from .._io import atomic_path
from .._plot import pyplot, save_png
from ..data.reference import REFERENCE_RUNS, read_summary, reference_summary
from ..errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Curves", "write_summary", "read_summary", "write_args", "log_file", "plot_runs"]


def write_summary(path: Path, rows: list[dict[str, Any]], leading: Sequence[str] = ()) -> None:
    """Rewrite the whole file (it is small) so a kill mid-write never leaves a torn row. ``leading`` columns
    come first (the task's), then every other key in order of appearance."""
    columns = list(leading) + [k for row in rows for k in row if k not in leading]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(columns)))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def write_args(path: Path, settings: dict[str, Any], resumed: tuple[Path, dict[str, tuple]] | None = None) -> None:
    """``args.yaml``: the settings the run was started with, then one comment line per resume naming the
    settings it changed, so the file always tells how the run was made (and still loads as one YAML mapping)."""
    if resumed is None or not path.is_file():
        text = yaml.safe_dump(settings, sort_keys=False)
    else:
        checkpoint, changed = resumed
        what = ", ".join(f"{k}: {new} (was {old})" for k, (old, new) in changed.items() if k != "resume")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"# {stamp} resumed from {checkpoint}; {what or 'no setting changed'}\n"
        text = path.read_text(encoding="utf-8") + line
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class _LogFile(logging.FileHandler):
    """The run's ``log.txt``. When the disk refuses a line (full, read-only), the console has already shown it and
    the failing write is the error the run reports: no traceback per line on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass


@contextlib.contextmanager
def log_file(path: Path | None) -> Iterator[logging.Handler | None]:
    """Copy the ``mobilenext`` log to ``path`` (appending, so a resumed run keeps its history) while inside,
    yielding the file's handler; ``None`` logs nowhere extra. The handler leaves with the block, so a second
    run in the same process does not write into the first one's log."""
    if path is None:
        yield None
        return
    handler = _LogFile(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("mobilenext")
    logger.addHandler(handler)
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:  # a library caller that set up no logging still gets a full log
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
        handler.close()


class Curves(NamedTuple):
    """How one task's ``summary.csv`` is drawn: losses left, scores right. A run is of the first task whose
    ``required`` columns its summary has."""

    name: str  # the kind of run, in messages ("classification", "detection", ...)
    made_by: str  # the command that writes it, for error messages
    required: tuple[str, ...]
    x: str
    losses: tuple[tuple[str, str], ...]  # (column, legend suffix), left panel; drawn where the run has the column
    scores: tuple[tuple[str, str], ...]  # (column, legend suffix), right panel; likewise
    score_axis: str  # "{}" stands for the legend names of the scores drawn
    loss_title: str
    score_title: str
    percent: float = 1.0  # factor that turns a score into %
    one_score: bool = False  # draw only the first score every run has, not all of them
    takes_reference: bool = False  # the authors' logged runs (``--reference``) are of this kind


class _Run(NamedTuple):
    label: str
    rows: list[dict[str, float]]
    kind: Curves


def _run_folder_hint(kinds: Sequence[Curves]) -> str:
    commands = sorted({command.strip() for kind in kinds for command in kind.made_by.split("/")})
    return f"a run folder is the --output of {', '.join(f'`{c}`' for c in commands)}"


def _load_run(run: Path, kinds: Sequence[Curves]) -> _Run:
    """Read and classify one run, or say in one sentence why it cannot be plotted."""
    if not run.exists():
        raise ConfigError(f"{run} does not exist; give a run folder or its summary.csv ({_run_folder_hint(kinds)}).")
    path = run / "summary.csv" if run.is_dir() else run
    if not path.is_file():
        raise ConfigError(
            f"{run} holds no summary.csv; is it a run folder? ({_run_folder_hint(kinds)}, "
            "and gets summary.csv after its first epoch or evaluation)."
        )
    # the folder names the run, also when its summary.csv is given (a file of another name names itself)
    label = path.resolve().parent.name if path.name == "summary.csv" else path.stem
    try:
        rows = read_summary(path)
    except (UnicodeDecodeError, csv.Error) as e:  # e.g. a PNG given by mistake
        raise ConfigError(f"{path} is not a summary.csv ({e}).") from None
    if not rows:
        raise ConfigError(f"{path} has no rows: no epochs/evaluations logged yet; plot it after the first one.")
    columns = {k for row in rows for k in row}  # read_summary drops empty cells, so a union over all rows
    kind = next((k for k in kinds if set(k.required) <= columns), None)
    if kind is None:
        expected = "; ".join(f"{','.join(k.required)} ({k.name}: {k.made_by})" for k in kinds)
        raise ConfigError(
            f"{path} has columns {','.join(dict.fromkeys(c for r in rows for c in r))}, which match "
            f"no kind of run; expected one of: {expected}."
        )
    return _Run(label, rows, kind)


def _load_runs(run_dirs: Sequence[str | Path], kinds: Sequence[Curves], reference: str | None) -> list[_Run]:
    """Every check before anything is drawn, so an error leaves no file behind and needs no matplotlib."""
    runs = [_load_run(Path(run), kinds) for run in run_dirs]
    if len({run.kind for run in runs}) > 1:
        kinds = ", ".join(f"{run.label} ({run.kind.name})" for run in runs)
        raise ConfigError(f"cannot plot runs of different kinds on the same axes: {kinds}; plot them separately.")
    if reference:
        others = [f"{run.label} ({run.kind.name})" for run in runs if not run.kind.takes_reference]
        if others:
            raise ConfigError(
                f"--reference adds the authors' ImageNet classification curve, which cannot share axes "
                f"with {', '.join(others)}; leave --reference out for this run."
            )
        label = f"authors: {REFERENCE_RUNS.get(reference, reference)}"
        runs.append(_Run(label, reference_summary(reference), next(k for k in kinds if k.takes_reference)))
    if not runs:
        raise ConfigError("nothing to plot; give at least one run folder (or a --reference curve).")
    return runs


def _draw_runs(runs: list[_Run]) -> Figure:
    """The figure of ``runs`` (all of one kind): losses left, the kind's accuracy metric right."""
    plt = pyplot()
    kind = runs[0].kind
    scores = kind.scores
    if kind.one_score:  # the first score every run has (the kind's required columns guarantee the last one)
        scores = (next(s for s in scores if all(any(s[0] in r for r in run.rows) for run in runs)),)
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in runs:
        color = None  # all curves of a run share the colour of its first; the authors' are dashed
        for ax, columns, factor in ((ax_loss, kind.losses, 1.0), (ax_score, scores, kind.percent)):
            for i, (col, name) in enumerate(columns):
                points = [(r[kind.x], r[col] * factor) for r in run.rows if kind.x in r and col in r]
                if not points:
                    continue
                style = "--" if run.label.startswith("authors") else ("-", "-", ":")[i]
                (line,) = ax.plot(
                    *zip(*points), style, color=color, alpha=(1.0, 0.5, 0.8)[i], label=f"{run.label} {name}"
                )
                color = line.get_color()
    ax_loss.set(xlabel=kind.x, ylabel="loss", title=kind.loss_title)
    ax_score.set(
        xlabel=kind.x, ylabel=kind.score_axis.format(", ".join(name for _, name in scores)), title=kind.score_title
    )
    for ax in (ax_loss, ax_score):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def plot_runs(
    run_dirs: Sequence[str | Path],
    output: str | Path,
    kinds: Sequence[Curves],
    reference: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Loss and accuracy curves of ``run_dirs`` (folders or their summary.csv, all of one of the ``kinds``) and
    optionally one of the authors' classification runs, as a PNG. ``mobilenext.api.plot_runs`` passes every
    task's kind."""
    return save_png(_draw_runs(_load_runs(run_dirs, kinds, reference)), Path(output), overwrite=overwrite)
