"""The one training engine under classification, detection and NAS search.

A *task* (:class:`Task`) says what is its own: data, model and optimiser (built in its ``__init__``), how a
batch becomes a loss, how a round is evaluated, which settings a resume must keep, its summary columns and
curves (what its checkpoint files mean is its ``files`` module's: :class:`~.checkpoint.TaskFiles`).
:class:`Runner` does everything else, once for every task:

- distributed set-up and clean-up (``torchrun``: nccl on GPU, gloo on CPU), DDP wrapping, SyncBatchNorm
  through timm's conversion (which keeps the activations of timm's ``BatchNormAct2d``);
- the run folder (:func:`~mobilenext.engine.run_folder.open_run`), ``--resume`` and ``--resume auto``;
- ``args.yaml``, ``log.txt``, ``summary.csv``, progress reports;
- atomic checkpoints tagged with the task, the model, the settings a resume must keep and the RNG states;
- mixed precision and its grad scaler, gradient clipping;
- the NaN/inf check, summed over ranks so that every rank stops together instead of waiting for a dead peer;
- best-checkpoint tracking.

A run is a sequence of *rounds*: train (an epoch, or ``eval_interval`` detection iterations), evaluate, save.
Each round reseeds every generator from ``(seed, round, rank)`` and the samplers shuffle by ``(seed, epoch)``,
so a round replayed after a crash sees the same batches and augmentations as an uninterrupted run.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from timm.layers import convert_sync_batchnorm
from torch import nn

from ..errors import CheckpointError, ConfigError, TrainingDiverged
from .amp import autocast
from .checkpoint import BEST, FORMAT, LAST, load_training_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed, local_device
from .memory import check_activation_memory
from .progress import Progress
from .records import Curves, write_args, write_summary
from .run_folder import open_run

__all__ = ["Runner", "Step", "Task", "prepare_model", "run_task", "seed_everything"]

log = logging.getLogger("mobilenext")

# Settings a resume may change: where the run lives and how it is computed, never what it computes. Every other
# setting must be given as the run was started (a task adds its length: ``Task.length_setting``).
RESUME_MAY_CHANGE = frozenset(
    {"resume", "output", "workers", "device", "log_interval", "pretrained", "backbone_checkpoint", "compile"}
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_model(model: nn.Module, dist: DistInfo, sync_bn: bool = False, channels_last: bool = False) -> nn.Module:
    """The model on this rank's device; under DDP with ``sync_bn``, its BatchNorms synchronised by timm's
    conversion (torch's own turns a ``BatchNormAct2d`` into a plain ``SyncBatchNorm`` and drops its activation)."""
    if sync_bn and dist.distributed:
        model = convert_sync_batchnorm(model)
    model.to(dist.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


@dataclass
class Step:
    """One training batch: the ``loss`` to minimise, the ``count`` of images in it, ``sums`` averaged over the
    round's images (e.g. ``{"train_loss": loss * count}``), and the unreadable images ``skipped`` in it."""

    loss: torch.Tensor
    count: int
    sums: dict[str, torch.Tensor]
    skipped: list[str] = field(default_factory=list)


class Task:
    """What a training task supplies to the :class:`Runner`. ``__init__(cfg, runner)`` builds data, model
    (through ``runner.prepare_model``), ``optimizer`` and ``scheduler``, so a user's mistake surfaces before any
    file is written."""

    name: ClassVar[str]  # the checkpoint's task tag
    round_name: ClassVar[str] = "epoch"
    position: ClassVar[str] = "epoch"  # the summary column numbering rounds; ``best`` refers to it
    summary_columns: ClassVar[tuple[str, ...]] = ()  # the leading columns of summary.csv
    curves: ClassVar[Curves | None] = None  # how `mobilenext plot` draws its summary.csv
    score_name: ClassVar[str] = "score"  # what picks best.pth (higher is better)
    score_scale: ClassVar[float] = 1.0  # factor that turns the score into the logged figure
    data_parallel: ClassVar[bool] = True  # False: the task refuses torchrun
    length_setting: ClassVar[str | None] = None  # a resume may change it (the schedule follows); None: it may not
    divergence_hint: ClassVar[str] = "Lower --lr."

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    clip_grad: float | None = None

    def __init__(self, cfg: Any, runner: Runner) -> None:
        self.cfg, self.runner = cfg, runner

    @property
    def run_prefix(self) -> str:
        """Default run folders are ``runs/<run_prefix>-<date>-<time>``; ``--resume auto`` looks among them."""
        return self.cfg.model

    def identity(self) -> dict[str, Any]:
        """The settings a resume must keep (model and what shapes it); a change is refused in one sentence."""
        return {"model": self.cfg.model}

    def finished(self, rounds: int) -> bool:
        raise NotImplementedError

    def batches(self, index: int) -> Iterable[Any]:
        """This round's training batches (set the samplers' epoch here)."""
        raise NotImplementedError

    def steps(self, index: int) -> int:
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any) -> Step:
        """Forward and loss of one batch through ``model`` (the DDP/compiled wrapper of ``self.model``)."""
        raise NotImplementedError

    def after_step(self) -> None:
        """After each optimiser step: per-step schedulers, EMA."""

    def evaluate(self) -> dict[str, Any]:
        """Held-out metrics; ``score`` picks best.pth (``None``: no best.pth)."""
        raise NotImplementedError

    def end_round(self, index: int, metrics: dict[str, Any]) -> None:
        """After evaluation: per-epoch schedulers."""

    def summary_row(self, index: int, train: dict[str, Any], metrics: dict[str, Any], seconds: float) -> dict:
        raise NotImplementedError

    def round_line(self, row: dict[str, Any]) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def progress_text(self) -> str:
        """Where the run stands, for the resume line."""
        return f"{self.runner.rounds} {self.round_name}(s) done"

    def settings(self) -> dict[str, Any]:
        """What args.yaml records: the settings, plus any the task derived from them."""
        return self.cfg.to_dict()

    def state(self) -> dict[str, Any]:
        """The task's own checkpoint entries besides model, optimizer, scheduler (e.g. EMA weights)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` on resume."""

    def load_scheduler(self, state: dict[str, Any], rounds: int, length_changed: bool) -> None:
        """Restore the scheduler on resume; ``length_changed``: the run now ends elsewhere (``length_setting``),
        and the schedule must follow the new length."""
        self.scheduler.load_state_dict(state)

    def write_records(self, output: Path) -> None:
        """Files of the task's own beside the checkpoint (written after it, on rank 0)."""

    def result(self) -> dict[str, Any]:
        return {}

    def memory_probe(self) -> tuple[nn.Module, tuple[int, ...], int, str] | None:
        """(module, input shape C x H x W, batch size, the flags that set them) whose activations must fit in
        memory (:func:`~.memory.check_activation_memory`); None: no check."""
        return None

    def clipped_parameters(self) -> Iterable[nn.Parameter]:
        return self.model.parameters()


def _plain(value: Any) -> Any:
    """Tuples as lists, so a setting compares equal after a round trip through a checkpoint."""
    return json.loads(json.dumps(value))


def _short(value: Any, limit: int = 60) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Runner:
    """Runs one :class:`Task` (a class) with settings ``cfg``: ``Runner(SearchTask, cfg).run()``. Without
    ``dist`` it is a single process on ``cfg.device``; :func:`run_task` joins ``torchrun``'s process group."""

    def __init__(self, task_type: type[Task], cfg: Any, dist: DistInfo | None = None) -> None:
        self.cfg = cfg
        self.dist = dist or DistInfo(0, 0, 1, local_device(cfg.device))
        if self.dist.distributed and not task_type.data_parallel:
            raise ConfigError(f"{task_type.name} runs in one process; start it without torchrun.")
        self.device = self.dist.device
        self.amp = getattr(cfg, "amp", False)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and self.device.type == "cuda")
        self.output = Path()
        self.rounds = 0
        self.history: list[dict[str, Any]] = []
        self.resumed: tuple[Path, dict[str, tuple[Any, Any]]] | None = None  # (checkpoint, changed settings)
        self.best: dict[str, Any] = {"metric": -math.inf, task_type.position: -1}
        seed_everything(cfg.seed)  # the same initial weights on every rank and in every rerun
        self.task = task_type(cfg, self)
        probe = self.task.memory_probe()
        if probe is not None:  # before any file is written or any batch is drawn
            check_activation_memory(*probe, self.device)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        cfg = self.cfg
        return prepare_model(model, self.dist, getattr(cfg, "sync_bn", False), getattr(cfg, "channels_last", False))

    # ---- the loop -----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Claim the run folder, resume if asked, and train round after round; returns the last metrics."""
        try:
            return self._run()
        finally:
            # Free DDP's wrapper (its reducer holds the process group) now, while the group and the interpreter
            # are alive: when an exception's traceback kept it to interpreter shutdown, gloo's threads aborted
            # the process there (torch 2.4, after a NaN stop, about 1 run in 8 on a loaded machine).
            self.train_model = None
            gc.collect()

    def _run(self) -> dict[str, Any]:
        cfg, task, main = self.cfg, self.task, self.dist.is_main
        with open_run(cfg.output, cfg.resume, task.run_prefix, self.dist) as output:
            self.output = output
            self._resume()
            self.train_model = self._wrap(task.model)
            if main:
                write_args(output / "args.yaml", task.settings(), resumed=self.resumed)
                log.info(task.describe())
            barrier()
            metrics: dict[str, Any] = {}
            while not task.finished(self.rounds):
                seed_everything(cfg.seed + 1000 * self.rounds + self.dist.rank)
                start = time.perf_counter()
                train = self._train_round()
                metrics = task.evaluate()
                task.end_round(self.rounds, metrics)
                if main:
                    row = task.summary_row(self.rounds, train, metrics, time.perf_counter() - start)
                    self.rounds += 1
                    self._save(row, metrics.get("score"))
                    skipped = train["skipped_names"] + metrics.get("skipped_names", [])
                    log.info(task.round_line(row) + self._skipped_line(row, skipped))
                else:
                    self.rounds += 1
                barrier()
            if main and self.best[task.position] >= 0:
                log.info(
                    f"done: best {task.score_name} {task.score_scale * self.best['metric']:.2f} at "
                    f"{task.position} {self.best[task.position]:,}; checkpoints in {output}"
                )
            return {**metrics, **task.result(), "best": self.best, "output": str(output)}

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if getattr(self.cfg, "compile", False):
            model = torch.compile(model)
        return model

    def _train_round(self) -> dict[str, Any]:
        task, interval = self.task, self.cfg.log_interval
        self.train_model.train()
        totals: dict[str, torch.Tensor] = {}
        images, skipped, index = 0, [], -1
        bar = Progress(
            task.steps(self.rounds), f"{task.round_name} {self.rounds}", enabled=self.dist.is_main, interval=interval
        )
        for index, batch in enumerate(task.batches(self.rounds)):
            with autocast(self.device, self.amp):
                step = task.training_step(self.train_model, batch)
            self._optimizer_step(step.loss)
            task.after_step()
            for key, value in step.sums.items():
                value = value.detach().double()
                totals[key] = totals[key] + value if key in totals else value
            images += step.count
            skipped += step.skipped
            if (index + 1) % interval == 0:
                self._check_finite(totals, index)
            bar.update(step.count, loss=step.loss.detach(), lr=task.optimizer.param_groups[0]["lr"])
        bar.close()
        self._check_finite(totals, index)
        counts = torch.tensor([images, len(skipped)], dtype=torch.float64, device=self.device)
        summed = all_reduce_sum(torch.cat([counts, *(v.reshape(1).to(self.device) for v in totals.values())]))
        images_total, skipped_total, *values = summed.tolist()
        return {
            **{k: v / max(images_total, 1) for k, v in zip(totals, values)},
            "img_per_sec": images_total / max(bar.elapsed, 1e-9),
            "skipped": int(skipped_total),
            "skipped_names": skipped,
        }

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        task, optimizer = self.task, self.task.optimizer
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if task.clip_grad is not None:
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(task.clipped_parameters(), task.clip_grad)
        self.scaler.step(optimizer)
        self.scaler.update()

    def _check_finite(self, totals: dict[str, torch.Tensor], index: int) -> None:
        """Every rank takes part and every rank gets the same answer, so all stop together."""
        local = (
            torch.stack([v.to(self.device) for v in totals.values()])
            if totals
            else torch.zeros(1, dtype=torch.float64, device=self.device)
        )
        if bool(torch.isfinite(all_reduce_sum(local.clone())).all()):
            return
        kept = self.output / LAST
        where = f"the last good checkpoint {kept} is kept" if kept.is_file() else "no checkpoint was saved yet"
        raise TrainingDiverged(
            f"the training loss became NaN/inf at {self.task.round_name} {self.rounds}, step {index} (lr "
            f"{self.task.optimizer.param_groups[0]['lr']:.3g}); {where}. {self.task.divergence_hint}"
        )

    # ---- checkpoints --------------------------------------------------------------------------------------
    def _save(self, row: dict[str, Any], score: float | None) -> None:
        task = self.task
        is_best = score is not None and score > self.best["metric"]
        if is_best:
            self.best = {"metric": score, task.position: row[task.position]}
        self.history.append(row)
        identity = _plain(task.identity())
        state = {
            "task": task.name,
            "model": identity.get("model"),
            "identity": identity,
            "args": self.cfg.to_dict(),
            "rounds": self.rounds,
            "state_dict": task.model.state_dict(),
            "optimizer": task.optimizer.state_dict(),
            "scheduler": task.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "best": self.best,
            "history": self.history,
            "metrics": row,
            **task.state(),
        }
        # Order matters for a kill between writes: the records never run ahead of last.pth.
        save_checkpoint(state, self.output / LAST)
        if is_best:
            save_checkpoint(state, self.output / BEST)
        write_summary(self.output / "summary.csv", self.history, leading=task.summary_columns)
        task.write_records(self.output)

    def _resume(self) -> None:
        resume = self.cfg.resume
        if not resume:
            return
        path = self.output / LAST if resume == "auto" else Path(resume)
        if resume == "auto" and not path.is_file():
            if self.dist.is_main:
                log.info(f"--resume auto: no checkpoint in {self.output}, starting a new run.")
            return
        state = load_training_checkpoint(path)
        self._check_resumable(path, state)
        changed = self._changed_settings(path, state["args"])
        task = self.task
        task.model.load_state_dict(state["state_dict"])
        task.optimizer.load_state_dict(state["optimizer"])
        task.load_scheduler(state["scheduler"], state["rounds"], task.length_setting in changed)
        self.scaler.load_state_dict(state["scaler"])
        task.load_state(state)
        set_rng_state(state["rng"])
        self.rounds, self.best, self.history = state["rounds"], dict(state["best"]), list(state["history"])
        self.resumed = (path, changed)
        if self.dist.is_main:
            log.info(f"resumed {path}: {task.progress_text()}.")
            if task.length_setting in changed:
                old, new = changed[task.length_setting]
                flag = "--" + task.length_setting.replace("_", "-")
                log.info(f"{flag} {new} (the run was started with {old}): the learning-rate schedule now ends there.")
            if getattr(self.cfg, "pretrained", None):
                log.info(f"--pretrained {self.cfg.pretrained} is not loaded: the run's checkpoint holds its weights.")

    def _check_resumable(self, path: Path, state: dict[str, Any]) -> None:
        """One sentence for a checkpoint of another task, model or shape-defining setting."""
        task = self.task
        if state.get("format") != FORMAT:
            raise CheckpointError(
                f"cannot resume {path}: it was written by an earlier version of mobilenext; start "
                "from its weights with --pretrained (or --backbone-checkpoint) in a new run."
            )
        if state.get("task") != task.name:
            raise CheckpointError(
                f"cannot resume: {path} is a {state.get('task')} checkpoint, not a {task.name} "
                "run; choose a new --output."
            )
        saved, current = state["identity"], _plain(task.identity())
        if saved.get("model") != current.get("model"):
            raise CheckpointError(
                f"cannot resume: {path} is a {saved.get('model')} run, not {current.get('model')}; "
                f"pass --model {saved.get('model')} or choose a new --output."
            )
        differ = [k for k in dict.fromkeys([*saved, *current]) if saved.get(k) != current.get(k)]
        if differ:
            name = differ[0]
            raise CheckpointError(
                f"cannot resume: {path} was trained with another {name.replace('_', '-')} "
                f"({_short(saved.get(name))}; now {_short(current.get(name))}); pass the same, or choose a new "
                "--output."
            )

    def _changed_settings(self, path: Path, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """The settings this resume changes, {name: (before, now)}; one sentence for any it may not change."""
        current = _plain(self.cfg.to_dict())
        may = RESUME_MAY_CHANGE | {self.task.length_setting}
        changed = {k: (saved.get(k), current.get(k)) for k in current if k in saved and saved[k] != current[k]}
        refused = [k for k in changed if k not in may]
        if refused:
            name, (old, new) = refused[0], changed[refused[0]]
            flag = "--" + name.replace("_", "-")
            allowed = ", ".join("--" + k.replace("_", "-") for k in sorted(may & set(current) - {"resume"}))
            raise CheckpointError(
                f"cannot resume {path} with {flag} {_short(new)}: the run was started with "
                f"{'it unset' if old is None else _short(old)}"
                f"{f' (and {len(refused) - 1} more setting(s) differ)' if len(refused) > 1 else ''}; give its "
                f"settings again (a resume may change only {allowed}), or start a new run."
            )
        return changed

    @staticmethod
    def _skipped_line(row: dict[str, Any], names: list[str]) -> str:
        count = row.get("skipped_images", 0)
        return f"\n  skipped {count} unreadable image(s), e.g. {'; '.join(names[:3])}" if count else ""


def run_task(task_type: type[Task], cfg: Any) -> dict[str, Any]:
    """Run ``task_type`` as ``cfg`` says, under ``torchrun`` (DDP) or as a plain process."""
    dist = init_distributed(cfg.device)
    try:
        if not dist.is_main:
            log.setLevel(logging.WARNING)
        return Runner(task_type, cfg, dist).run()
    finally:
        cleanup()


def cycle(loader: Iterable[Any]) -> Iterator[Any]:
    """``loader``'s batches again and again (a fresh pass each time)."""
    while True:
        yield from loader
