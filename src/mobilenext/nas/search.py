"""``mobilenext nas search``: DARTS on CIFAR, with the sandglass block among the candidate operations.

One epoch walks the weights' half of the training set. Each step first moves alpha on a batch of the
other half (first or second order, :class:`~mobilenext.nas.supernet.Architect`), then the weights on the
step's own batch, as DARTS does. After each epoch the held-out half is scored, the genotype derived, and
the run folder updated atomically: ``last.pth`` (resume), ``summary.csv``, ``genotypes.txt`` (the cells
derived after each epoch), ``genotype.json`` (with the softmax weights), ``genotype.png`` and ``alphas.png``.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from .._io import atomic_path
from ..checks import Number
from ..data.loader import ResumableSampler
from ..engine.checkpoint import (
    LAST,
    find_auto_resume,
    load_training_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ..engine.config import ANY_INT, COUNT, DEVICE, FRACTION, NONNEG, NONNEG_INT, POSITIVE, Settings, setting
from ..engine.distributed import DistInfo
from ..engine.progress import Progress
from ..engine.records import write_args, write_summary
from ..engine.run_folder import RUNS_ROOT, open_run
from ..engine.train import TrainingDiverged, default_workers, seed_everything
from ..errors import CheckpointError, ConfigError, MissingDependencyError
from .data import cifar_transforms, open_cifar, split_for_search
from .genotypes import Genotype, save_genotype
from .operations import resolve_ops
from .supernet import HESSIAN_MODES, Architect, SearchNetwork

__all__ = ["SearchConfig", "Searcher", "search"]

log = logging.getLogger("mobilenext")

RUN_PREFIX = "nas-search"
SUMMARY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "arch_loss", "lr")
_BOOL = {"action": argparse.BooleanOptionalAction}


@dataclass
class SearchConfig(Settings):
    """DARTS's search recipe (Liu et al. 2019, CIFAR-10) as the defaults."""

    data: str | None = setting(None, "CIFAR python folder (cifar-10-batches-py/ or its parent)")
    ops: tuple[str, ...] = setting(
        ("darts+sg",), "candidate operations: presets darts, darts+sg, darts+ir and/or operation names", nargs="+"
    )
    unrolled: bool = setting(True, "second-order (unrolled) alpha gradient; --no-unrolled for first order", **_BOOL)
    hessian: str = setting("exact", "second order: Hessian-vector product by autograd (exact) or by DARTS's "
                           "central differences (less memory)", choices=HESSIAN_MODES)
    epochs: int = setting(50, "search epochs", **COUNT)
    batch_size: int = setting(64, "batch size (weights and alpha)", "-b", "--batch-size", **COUNT)
    lr: float = setting(0.025, "weights: SGD learning rate, cosine-annealed", **POSITIVE)
    min_lr: float = setting(0.001, "weights: final learning rate", **NONNEG)
    momentum: float = setting(0.9, "weights: SGD momentum", **FRACTION)
    weight_decay: float = setting(3e-4, "weights: weight decay", **NONNEG)
    grad_clip: float = setting(5.0, "weights: gradient norm clip", **POSITIVE)
    arch_lr: float = setting(3e-4, "alpha: Adam learning rate", **POSITIVE)
    arch_weight_decay: float = setting(1e-3, "alpha: weight decay", **NONNEG)
    init_channels: int = setting(16, "channels of the first cells", **COUNT)
    layers: int = setting(8, "cells in the supernet", **COUNT)
    nodes: int = setting(4, "intermediate nodes per cell", **COUNT)
    train_portion: float = setting(0.5, "fraction of the training images that train the weights",
                                   type=Number(float, 0, 1, True, True))
    cutout: int = setting(0, "Cutout square side (0: off)", **NONNEG_INT)
    channels_last: bool = setting(True, "channels-last memory format", **_BOOL)
    workers: int | None = setting(None, "data loader processes (default 4)", "-j", "--workers", **NONNEG_INT)
    device: str | None = setting(None, "cuda or cpu (default: cuda when available)", **DEVICE)
    seed: int = setting(2, "random seed", **ANY_INT)
    output: str | None = setting(None, "run folder (default: runs/nas-search-<time>)")
    resume: str | None = setting(None, "checkpoint to resume, or 'auto' for the run folder's last.pth")
    log_interval: int = setting(50, "steps between progress reports when not on a terminal", **COUNT)

def _loader(dataset, indices: range, cfg: SearchConfig, seed: int, pin: bool) -> DataLoader:
    workers = default_workers() if cfg.workers is None else cfg.workers
    subset = Subset(dataset, indices)
    if len(subset) < cfg.batch_size:
        raise ConfigError(f"a search split of {len(subset)} images is smaller than one batch ({cfg.batch_size}); "
                          "lower --batch-size.")
    return DataLoader(subset, cfg.batch_size, sampler=ResumableSampler(len(subset), seed), num_workers=workers,
                      drop_last=True, pin_memory=pin, persistent_workers=workers > 0)


class Searcher:
    """One search run; ``run()`` returns the final genotype and metrics."""

    def __init__(self, cfg: SearchConfig):
        self.cfg, self.output = cfg, Path()
        self.ops = resolve_ops(cfg.ops)
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dataset = open_cifar(cfg.data, "train")
        dataset.transform = cifar_transforms(training=True, cutout=cfg.cutout)
        self.data_description = f"{dataset.name} {cfg.data}"
        weights_part, alpha_part = split_for_search(len(dataset), cfg.train_portion)
        pin = self.device.type == "cuda"
        self.train_loader = _loader(dataset, weights_part, cfg, cfg.seed, pin)
        self.val_loader = _loader(dataset, alpha_part, cfg, cfg.seed + 1, pin)
        seed_everything(cfg.seed)
        self.model = SearchNetwork(cfg.init_channels, len(dataset.classes), cfg.layers, cfg.nodes, cfg.nodes,
                                   self.ops).to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.weight_parameters(), cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, cfg.epochs, eta_min=cfg.min_lr)
        self.architect = Architect(self.model, cfg.arch_lr, cfg.arch_weight_decay, second_order=cfg.unrolled,
                                   hessian=cfg.hessian)
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []

    def _resume(self) -> None:
        cfg = self.cfg
        if not cfg.resume:
            return
        path = find_auto_resume(self.output, RUNS_ROOT, RUN_PREFIX) if cfg.resume == "auto" else Path(cfg.resume)
        if path is None:
            log.info(f"--resume auto: no checkpoint in {self.output}, starting a new search.")
            return
        state = load_training_checkpoint(path)
        if state.get("kind") != "nas-search":
            raise CheckpointError(f"cannot resume: {path} is not a `mobilenext nas search` checkpoint.")
        if tuple(state["ops"]) != self.ops or state["supernet"] != self.model.config:
            raise CheckpointError(f"cannot resume: {path} searched another space ({', '.join(state['ops'])}; "
                                  f"{state['supernet']}); pass the same --ops and sizes, or a new --output.")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.architect.optimizer.load_state_dict(state["arch_optimizer"])
        set_rng_state(state["rng"])
        self.start_epoch, self.history = state["epoch"], list(state["history"])
        log.info(f"resumed {path}: {self.start_epoch} of {cfg.epochs} epochs done.")

    # ---- the loop -----------------------------------------------------------------------------------------
    def run(self, output: Path | None = None) -> dict[str, Any]:
        """Search in ``output`` (a folder claimed by ``open_run``; by default claimed here from the settings),
        continuing its checkpoint when resuming."""
        if output is None:
            with open_run(self.cfg.output, self.cfg.resume, RUN_PREFIX, DistInfo(0, 0, 1, self.device)) as output:
                return self.run(output)
        self.output = output
        self._resume()
        write_args(self.output / "args.yaml", self.cfg.to_dict())
        log.info(self._describe())
        for epoch in range(self.start_epoch, self.cfg.epochs):
            seed_everything(self.cfg.seed + 1000 * epoch)
            self.train_loader.sampler.set_epoch(epoch)
            self.val_loader.sampler.set_epoch(epoch)
            start = time.perf_counter()
            train = self.search_one_epoch(epoch)
            val = self.evaluate()
            self.scheduler.step()
            row = {"epoch": epoch, **train, **val, "epoch_time": round(time.perf_counter() - start, 2),
                   "genotype": str(self.model.genotype())}
            self._save(epoch, row)
            log.info(self._epoch_line(row))
        genotype = self.model.genotype()
        log.info(f"done: genotype {genotype}\n  in {self.output / 'genotype.json'}; evaluate it with "
                 f"`mobilenext nas train --genotype {self.output / 'genotype.json'} --data {self.cfg.data}`")
        return {**(self.history[-1] if self.history else {}), "genotype": genotype, "output": str(self.output)}

    def search_one_epoch(self, epoch: int) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        model.train()
        lr = self.optimizer.param_groups[0]["lr"]
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
        arch_loss_sum = 0.0
        val_batches = iter(self.val_loader)
        bar = Progress(len(self.train_loader), f"search epoch {epoch}", interval=cfg.log_interval)
        for step, (images, targets) in enumerate(self.train_loader):
            try:
                val_images, val_targets = next(val_batches)
            except StopIteration:  # the alpha half ran out first (a train portion above one half)
                val_batches = iter(self.val_loader)
                val_images, val_targets = next(val_batches)
            train_batch, val_batch = self._to_device(images, targets), self._to_device(val_images, val_targets)
            arch_loss_sum += self.architect.step(train_batch, val_batch, lr, self.optimizer)

            logits = model(train_batch[0])
            loss = F.cross_entropy(logits, train_batch[1])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.weight_parameters(), cfg.grad_clip)
            self.optimizer.step()
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"the search loss became NaN/inf at epoch {epoch}, step {step}; the last "
                                       "good checkpoint is kept. Lower --lr or --arch-lr.")
            n = len(targets)
            sums += torch.tensor([float(loss.detach()) * n, float((logits.argmax(1) == train_batch[1]).sum()), n],
                                 dtype=torch.float64)
            bar.update(n, loss=loss.detach())
        bar.close()
        loss_sum, correct, count = sums.tolist()
        return {"train_loss": loss_sum / count, "train_acc": 100 * correct / count,
                "arch_loss": arch_loss_sum / len(self.train_loader), "lr": lr,
                "img_per_sec": round(count / bar.elapsed, 1)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and top-1 of the supernet on the held-out half (the data alpha learns from)."""
        self.model.eval()
        sums = torch.zeros(3, dtype=torch.float64)
        for images, targets in self.val_loader:
            images, targets = self._to_device(images, targets)
            logits = self.model(images)
            sums += torch.tensor([float(F.cross_entropy(logits, targets, reduction="sum")),
                                  float((logits.argmax(1) == targets).sum()), len(targets)], dtype=torch.float64)
        loss_sum, correct, count = sums.tolist()
        return {"val_loss": loss_sum / count, "val_acc": 100 * correct / count}

    def _to_device(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, targets.to(self.device, non_blocking=True)

    # ---- records ------------------------------------------------------------------------------------------
    def _save(self, epoch: int, row: dict[str, Any]) -> None:
        genotype = self.model.genotype()
        state = {
            "kind": "nas-search",
            "args": self.cfg.to_dict(),
            "ops": list(self.ops),
            "supernet": self.model.config,
            "epoch": epoch + 1,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "arch_optimizer": self.architect.optimizer.state_dict(),
            "rng": rng_state(),
            "genotype": genotype.to_dict(),
            "history": self.history + [row],
        }
        self.history.append(row)
        save_checkpoint(state, self.output / LAST)  # first, so the records never run ahead of the checkpoint
        numbers = [{k: v for k, v in r.items() if k != "genotype"} for r in self.history]
        write_summary(self.output / "summary.csv", numbers, leading=SUMMARY_COLUMNS)
        with atomic_path(self.output / "genotypes.txt") as tmp:  # the derived cells, epoch by epoch
            tmp.write_text("".join(f"epoch {r['epoch']}: {r['genotype']}\n" for r in self.history))
        self._write_genotype(genotype, epoch)

    def _write_genotype(self, genotype: Genotype, epoch: int) -> None:
        normal, reduce = (w.detach().cpu() for w in self.model.arch_weights())
        save_genotype(genotype, self.output / "genotype.json", ops=list(self.ops), epochs_searched=epoch + 1,
                      search=self.cfg.to_dict(), weights={"normal": normal.tolist(), "reduce": reduce.tolist()})
        try:
            from .plot import plot_alphas, plot_genotype

            plot_genotype(genotype, self.output / "genotype.png", title=f"searched cells, epoch {epoch}")
            plot_alphas(normal, reduce, self.ops, self.output / "alphas.png", steps=self.cfg.nodes)
        except MissingDependencyError as e:
            if epoch == self.start_epoch:
                log.warning(f"no cell pictures: {e}")

    def _describe(self) -> str:
        cfg = self.cfg
        weights = sum(p.numel() for p in self.model.weight_parameters())
        order = f"second order (unrolled, {cfg.hessian} Hessian)" if cfg.unrolled else "first order"
        return (f"DARTS search, {order}, on {self.data_description}: {len(self.train_loader.dataset):,} images for "
                f"the weights, {len(self.val_loader.dataset):,} for alpha; operations {', '.join(self.ops)}; "
                f"supernet {cfg.layers} cells x {cfg.nodes} nodes, {cfg.init_channels} channels, {weights:,} "
                f"weights; {cfg.epochs} epochs x {len(self.train_loader)} steps of {cfg.batch_size}; device "
                f"{self.device}; output {self.output}")

    def _epoch_line(self, row: dict[str, Any]) -> str:
        return (f"epoch {row['epoch']:>3}/{self.cfg.epochs}  train_loss {row['train_loss']:.4f}  train_acc "
                f"{row['train_acc']:.2f}  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.2f}  lr "
                f"{row['lr']:.4g}  {row['epoch_time']:.1f}s  {row['img_per_sec']:.0f} img/s\n  {row['genotype']}")


def search(cfg: SearchConfig) -> dict[str, Any]:
    """Search as ``cfg`` says (one process)."""
    return Searcher(cfg).run()
