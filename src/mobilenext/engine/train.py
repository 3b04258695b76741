"""The training loop. timm provides the parts (transforms, mixup, optimizers, schedulers, EMA, losses);
this file only ties them together, in the order a reader expects: data, model, optimisation, resume,
then one ``train_one_epoch`` + ``evaluate`` + ``save`` per epoch.

Reproducible resume: each epoch reseeds every generator from ``(seed, epoch, rank)`` and the sampler
shuffles by ``(seed, epoch)``, so an epoch replayed after a crash sees the same batches and the same
augmentations as it would have in an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.layers import convert_sync_batchnorm
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn

from .. import create_model
from ..data import create_loader, create_transforms, open_datasets, resolve_transform_config
from ..errors import CheckpointError, ConfigError, MobileNeXtError
from ..models.checkpoint import check_state_dict, classifier_classes, load_checkpoint, read_state_dict, to_model_layout
from .checkpoint import (
    BEST,
    LAST,
    find_auto_resume,
    load_training_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed
from .evaluate import autocast, evaluate
from .progress import Progress
from .records import read_summary, write_args, write_summary
from .run_folder import RUNS_ROOT, open_run

__all__ = ["TrainingDiverged", "train", "Trainer"]

log = logging.getLogger("mobilenext")


class TrainingDiverged(MobileNeXtError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_workers() -> int:
    """Four loader processes per rank, fewer on a machine with fewer cores (more would only contend)."""
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP and torch.compile wrappers (what checkpoints hold)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


class Trainer:
    """One training run: ``__init__`` builds data, model and optimiser (where a user's mistake shows, before any
    file is written); ``run(output)`` resumes if asked and trains, returning the final epoch's metrics."""

    def __init__(self, cfg: TrainConfig, dist: DistInfo):
        self.dist, self.output = dist, Path()
        self.datasets = open_datasets(cfg.data, cfg.dataset, cfg.train_split, cfg.val_split)
        if self.datasets.train is None:
            raise ConfigError("no training split; pass --train-split.")
        # The dataset's own defaults fill whatever the user and the config left unset.
        unset = {k: v for k, v in self.datasets.defaults.items() if getattr(cfg, k) is None}
        self.cfg = cfg = dataclasses.replace(cfg, **unset)
        self.num_classes = cfg.num_classes or len(self.datasets.classes)
        if not self.num_classes:
            raise ConfigError("this dataset does not list its classes; pass --num-classes.")
        self.device = dist.device
        seed_everything(cfg.seed)  # the same initial weights on every rank and in every rerun
        self.model = self._build_model()
        self.data_config = resolve_transform_config(self.model, {}, dataclasses.asdict(cfg))
        self.train_loader, self.val_loader = self._build_loaders()
        self.lr = cfg.global_lr(dist.world_size)
        self.optimizer = create_optimizer_v2(
            self.model, opt=cfg.opt, lr=self.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
            filter_bias_and_bn=not cfg.weight_decay_all, **({"eps": cfg.opt_eps} if cfg.opt_eps is not None else {}),
        )
        self.scheduler, self.num_epochs = create_scheduler_v2(
            self.optimizer, sched=cfg.sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs,
            decay_rate=cfg.decay_rate, min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr, warmup_epochs=cfg.warmup_epochs,
            cooldown_epochs=cfg.cooldown_epochs, updates_per_epoch=len(self.train_loader),
        )
        self.ema = ModelEmaV3(self.model, decay=cfg.model_ema_decay) if cfg.model_ema else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp and self.device.type == "cuda")
        self.mixup = self._build_mixup()
        self.train_loss = (
            SoftTargetCrossEntropy() if self.mixup
            else LabelSmoothingCrossEntropy(cfg.smoothing) if cfg.smoothing > 0
            else nn.CrossEntropyLoss()
        )
        self.start_epoch, self.num_updates = 0, 0
        self.best = {"metric": -math.inf, "epoch": -1}
        self.history: list[dict[str, Any]] = []

    # ---- set-up -------------------------------------------------------------------------------------------
    def _build_model(self) -> nn.Module:
        cfg = self.cfg
        kwargs: dict[str, Any] = {"num_classes": self.num_classes, **self.model_kwargs()}
        if cfg.drop is not None:
            kwargs["drop_rate"] = cfg.drop
        if cfg.drop_path is not None:
            kwargs["drop_path_rate"] = cfg.drop_path
        model = create_model(cfg.model, **kwargs)
        if cfg.pretrained:
            self._load_pretrained(model, cfg.pretrained)
        if cfg.sync_bn and self.dist.distributed:
            model = convert_sync_batchnorm(model)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the model beyond the common ones (a subclass's, e.g. a NAS genotype). They are
        saved in the checkpoints so that ``mobilenext validate`` and resume rebuild the same model."""
        return {}

    def _load_pretrained(self, model: nn.Module, path: str) -> None:
        state_dict = to_model_layout(read_state_dict(path), model)
        source_classes = classifier_classes(state_dict, model)
        reset = source_classes is not None and source_classes != self.num_classes
        with warnings.catch_warnings():  # the message below says it better
            warnings.simplefilter("ignore")
            load_checkpoint(model, state_dict, reset_classifier=reset)
        if reset and self.dist.is_main:
            log.info(f"fine-tuning: {path} has a {source_classes}-class classifier; it is replaced by a new "
                     f"{self.num_classes}-class one, trained from scratch.")

    def transforms(self):
        """(train, eval) transforms: timm's, with this run's augmentation settings."""
        cfg = self.cfg
        augment = {
            "scale": cfg.scale, "ratio": cfg.ratio, "hflip": cfg.hflip, "color_jitter": cfg.color_jitter,
            "auto_augment": cfg.aa, "re_prob": cfg.reprob, "re_mode": cfg.remode, "re_count": cfg.recount,
        }
        return create_transforms(self.data_config, {k: v for k, v in augment.items() if v is not None})

    def _build_loaders(self):
        cfg = self.cfg
        train_tf, eval_tf = self.transforms()
        self.datasets.train.transform, self.datasets.val.transform = train_tf, eval_tf
        common = dict(workers=default_workers() if cfg.workers is None else cfg.workers, rank=self.dist.rank,
                      world_size=self.dist.world_size, pin_memory=self.device.type == "cuda")
        train = create_loader(self.datasets.train, cfg.batch_size, training=True, seed=cfg.seed, **common)
        val = create_loader(self.datasets.val, cfg.batch_size, training=False, **common)
        if len(train) == 0:
            raise ConfigError(f"the training split has fewer images ({len(self.datasets.train)}) than one global "
                              f"batch ({cfg.batch_size} x {self.dist.world_size}); lower --batch-size.")
        return train, val

    def _build_mixup(self) -> Mixup | None:
        cfg = self.cfg
        if cfg.mixup <= 0 and cfg.cutmix <= 0:
            return None
        if cfg.batch_size % 2:
            raise ConfigError(f"mixup/cutmix pairs images in a batch; use an even --batch-size, not {cfg.batch_size}.")
        return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing,
                     num_classes=self.num_classes)

    def _wrap_for_training(self, model: nn.Module) -> nn.Module:
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    # ---- resume -------------------------------------------------------------------------------------------
    def _resume(self) -> None:
        cfg = self.cfg
        if not cfg.resume:
            return
        path = find_auto_resume(self.output, RUNS_ROOT, cfg.model) if cfg.resume == "auto" else Path(cfg.resume)
        if path is None:
            if self.dist.is_main:
                log.info(f"--resume auto: no checkpoint in {self.output}, starting a new run.")
            return
        state = load_training_checkpoint(path)
        trained = state.get("args", {}).get("model")
        if trained != cfg.model:
            raise CheckpointError(f"cannot resume: {path} is a {trained} run, not {cfg.model}; pass --model {trained} "
                                  "or choose a new --output.")
        saved, current = state.get("model_kwargs", {}), self.model_kwargs()
        if saved != current:
            differ = sorted(k for k in {*saved, *current} if saved.get(k) != current.get(k))
            raise CheckpointError(f"cannot resume: {path} was trained with other model settings (another "
                                  f"{', '.join(differ)}); pass the same ones or choose a new --output.")
        check_state_dict(state["state_dict"], self.model)
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if "state_dict_ema" not in state:
                raise CheckpointError(f"cannot resume {path} with --model-ema: it was trained without EMA.")
            self.ema.module.load_state_dict(state["state_dict_ema"])
        set_rng_state(state["rng"])
        self.start_epoch, self.num_updates = state["epoch"], state["num_updates"]
        self.best = dict(state["best"])
        self.history = [row for row in self._read_history() if row["epoch"] < self.start_epoch]
        if self.dist.is_main:
            log.info(f"resumed {path}: epoch {self.start_epoch}, {self.num_updates} optimizer steps done.")
            if cfg.pretrained:
                log.info(f"--pretrained {cfg.pretrained} is not loaded: the run's checkpoint holds its weights.")

    def _read_history(self) -> list[dict[str, Any]]:
        path = self.output / "summary.csv"
        return [{k: int(v) if k == "epoch" else v for k, v in row.items()} for row in read_summary(path)] \
            if path.is_file() else []

    # ---- the loop -----------------------------------------------------------------------------------------
    def run(self, output: Path) -> dict[str, Any]:
        """Train in ``output`` (a folder :func:`~mobilenext.engine.run_folder.open_run` claimed), continuing
        its checkpoint when resuming."""
        self.output = output
        self._resume()
        self.train_model = self._wrap_for_training(self.model)
        cfg, main = self.cfg, self.dist.is_main
        if main:
            write_args(self.output / "args.yaml", {**cfg.to_dict(), "lr": self.lr})
            log.info(self._describe())
        barrier()
        metrics: dict[str, Any] = {}
        for epoch in range(self.start_epoch, self.num_epochs):
            seed_everything(cfg.seed + 1000 * epoch + self.dist.rank)
            self.train_loader.sampler.set_epoch(epoch)
            start = time.perf_counter()
            train_stats = self.train_one_epoch(epoch)
            metrics = self._evaluate_all()
            self.scheduler.step(epoch + 1, metrics["score"])
            row = self._summary_row(epoch, train_stats, metrics, time.perf_counter() - start)
            if main:
                self._save(epoch, row, metrics)
                log.info(self._epoch_line(epoch, row, train_stats["skipped_names"] + metrics["model"]["skipped_names"]))
            barrier()
        if main and self.best["epoch"] >= 0:
            log.info(f"done: best top-1 {self.best['metric']:.2f} at epoch {self.best['epoch']}; "
                     f"checkpoints in {self.output}")
        return {**metrics, "best": self.best, "output": str(self.output), "num_updates": self.num_updates}

    def train_one_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, model = self.cfg, self.train_model
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        images_seen, skipped = 0, []
        steps = len(self.train_loader)
        bar = Progress(steps, f"epoch {epoch}", enabled=self.dist.is_main, interval=cfg.log_interval)
        for step, (images, targets, problems) in enumerate(self.train_loader):
            skipped += problems
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            if self.mixup is not None:
                images, targets = self.mixup(images, targets)
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, cfg.amp):
                loss = self.loss(model(images), targets)
            self._optimizer_step(loss)
            loss_sum += loss.detach().double() * len(images)
            images_seen += len(images)
            if (step + 1) % cfg.log_interval == 0 or step + 1 == steps:
                self._check_finite(loss_sum, epoch, step)
            bar.update(len(images), loss=loss.detach(), lr=self.optimizer.param_groups[0]["lr"])
        bar.close()
        counts = torch.tensor([images_seen, len(skipped)], dtype=torch.float64, device=self.device)
        loss_total, images_total, skipped_total = all_reduce_sum(torch.cat([loss_sum[None], counts])).tolist()
        return {"loss": loss_total / images_total, "img_per_sec": images_total / bar.elapsed,
                "skipped": int(skipped_total), "skipped_names": skipped}

    def loss(self, output: Any, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch's model output (a subclass may add auxiliary terms)."""
        return self.train_loss(output, targets)

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.num_updates += 1
        self.scheduler.step_update(self.num_updates)
        if self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)

    def _check_finite(self, loss_sum: torch.Tensor, epoch: int, step: int) -> None:
        """All ranks stop together: the check reduces over ranks, so no rank waits for a dead peer."""
        if torch.isfinite(all_reduce_sum(loss_sum.clone())):
            return
        kept = self.output / LAST
        where = f"the last good checkpoint {kept} is kept" if kept.is_file() else "no checkpoint was saved yet"
        raise TrainingDiverged(
            f"the training loss became NaN/inf at epoch {epoch}, step {step} (lr "
            f"{self.optimizer.param_groups[0]['lr']:.3g}); {where}. "
            "Lower --lr, add --warmup-epochs or --clip-grad."
        )

    def _evaluate_all(self) -> dict[str, Any]:
        """The model, and its EMA when kept; ``score`` (what picks the best checkpoint) follows timm: EMA if any."""
        common = dict(amp=self.cfg.amp, channels_last=self.cfg.channels_last, progress=self.dist.is_main)
        metrics = {"model": evaluate(self.model, self.val_loader, self.device, **common)}
        if self.ema is not None:
            metrics["ema"] = evaluate(self.ema.module, self.val_loader, self.device, **common)
        metrics["score"] = metrics["ema" if self.ema is not None else "model"]["top1"]
        return metrics

    # ---- records ------------------------------------------------------------------------------------------
    def _summary_row(self, epoch: int, train: dict, metrics: dict, seconds: float) -> dict[str, Any]:
        row = {"epoch": epoch, "train_loss": train["loss"], "eval_loss": metrics["model"]["loss"],
               "eval_prec1": metrics["model"]["top1"], "eval_prec5": metrics["model"]["top5"]}
        if "ema" in metrics:
            row.update(ema_eval_loss=metrics["ema"]["loss"], ema_eval_prec1=metrics["ema"]["top1"],
                       ema_eval_prec5=metrics["ema"]["top5"])
        row.update(lr=self.optimizer.param_groups[0]["lr"], epoch_time=round(seconds, 2),
                   train_img_per_sec=round(train["img_per_sec"], 1),
                   skipped_images=train["skipped"] + metrics["model"]["skipped"])
        return row

    def _save(self, epoch: int, row: dict[str, Any], metrics: dict[str, Any]) -> None:
        is_best = metrics["score"] > self.best["metric"]
        if is_best:
            self.best = {"metric": metrics["score"], "epoch": epoch}
        state = {
            "args": self.cfg.to_dict(),
            "classes": list(self.datasets.classes),
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()},
            "model_kwargs": self.model_kwargs(),
            "epoch": epoch + 1,  # epochs completed
            "num_updates": self.num_updates,
            "state_dict": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "metrics": {k: v for k, v in row.items()},
            "best": self.best,
        }
        if self.ema is not None:
            state["state_dict_ema"] = self.ema.module.state_dict()
        self.history.append(row)
        # Order matters for a kill between writes: the summary never runs ahead of last.pth.
        save_checkpoint(state, self.output / LAST)
        if is_best:
            save_checkpoint(state, self.output / BEST)
        write_summary(self.output / "summary.csv", self.history)

    def _describe(self) -> str:
        cfg, d = self.cfg, self.data_config
        return (
            f"{cfg.model} ({sum(p.numel() for p in self.model.parameters()):,} params) on {self.datasets.description}: "
            f"{len(self.datasets.train):,} train / {len(self.datasets.val):,} held-out images, {self.num_classes} "
            f"classes, {d['img_size']} px; {self.num_epochs} epochs x {len(self.train_loader)} steps, batch "
            f"{cfg.batch_size} x {self.dist.world_size} process(es), {cfg.opt} lr {self.lr:.4g}, {cfg.sched}; "
            f"device {self.device}; output {self.output}"
        )

    def _epoch_line(self, epoch: int, row: dict[str, Any], skipped_names: list[str]) -> str:
        line = (f"epoch {epoch:>3}/{self.num_epochs}  train_loss {row['train_loss']:.4f}  "
                f"eval_loss {row['eval_loss']:.4f}  top1 {row['eval_prec1']:.2f}  top5 {row['eval_prec5']:.2f}")
        if "ema_eval_prec1" in row:
            line += f"  ema_top1 {row['ema_eval_prec1']:.2f}"
        line += f"  lr {row['lr']:.4g}  {row['epoch_time']:.1f}s  {row['train_img_per_sec']:.0f} img/s"
        if row["skipped_images"]:
            line += f"\n  skipped {row['skipped_images']} unreadable image(s), e.g. {'; '.join(skipped_names[:3])}"
        return line


def train(cfg: TrainConfig, trainer: type[Trainer] = Trainer) -> dict[str, Any]:
    """Train as ``cfg`` says (with ``trainer``, a :class:`Trainer` or subclass); works under ``torchrun``
    (DDP) and as a plain process."""
    dist = init_distributed(cfg.device)
    try:
        if not dist.is_main:
            logging.getLogger("mobilenext").setLevel(logging.WARNING)
        job = trainer(cfg, dist)  # data, model, optimiser: a user's mistake surfaces here, before a file is written
        with open_run(cfg.output, cfg.resume, cfg.model, dist) as output:
            return job.run(output)
    finally:
        cleanup()
