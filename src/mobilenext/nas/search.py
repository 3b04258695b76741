"""``mobilenext nas search``: DARTS on CIFAR, with the sandglass block among the candidate operations.

One epoch walks the weights' half of the training set. Each step first moves alpha on a batch of the
other half (first or second order, :class:`~mobilenext.nas.supernet.Architect`), then the weights on the
step's own batch, as DARTS does. After each epoch the held-out half is scored, the genotype derived, and
the run folder updated atomically: ``last.pth`` (resume), ``summary.csv``, ``genotypes.txt`` (the cells
derived after each epoch), ``genotype.json`` (with the softmax weights), ``genotype.png`` and ``alphas.png``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from .._io import atomic_path
from ..checks import Number
from ..data.loader import Reseeded, ResumableSampler, default_workers, loader_generator
from ..engine.config import (
    ANY_INT,
    BATCH,
    COUNT,
    EPOCHS,
    FRACTION,
    NONNEG,
    NONNEG_INT,
    POSITIVE,
    SWITCH,
    RunSettings,
    setting,
)
from ..engine.records import Curves
from ..engine.runner import Runner, Step, Task, cycle, run_task
from ..errors import ConfigError, MissingDependencyError
from .data import cifar_transforms, open_cifar, split_for_search
from .genotypes import Genotype, save_genotype
from .operations import resolve_ops
from .supernet import HESSIAN_MODES, Architect, SearchNetwork

__all__ = ["SearchConfig", "SearchTask", "search"]

log = logging.getLogger("mobilenext")

RUN_PREFIX = "nas-search"
SUMMARY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "arch_loss", "lr")


@dataclass
class SearchConfig(RunSettings):
    """DARTS's search recipe (Liu et al. 2019, CIFAR-10) as the defaults."""

    data: str | None = setting(None, "CIFAR python folder (cifar-10-batches-py/ or its parent)")
    ops: tuple[str, ...] = setting(
        ("darts+sg",), "candidate operations: presets darts, darts+sg, darts+ir and/or operation names", nargs="+"
    )
    unrolled: bool = setting(True, "second-order (unrolled) alpha gradient; --no-unrolled for first order", **SWITCH)
    hessian: str = setting(
        "exact",
        "second order: Hessian-vector product by autograd (exact) or by DARTS's central differences (less memory)",
        choices=HESSIAN_MODES,
    )
    epochs: int = setting(50, "search epochs", **EPOCHS)
    batch_size: int = setting(64, "batch size (weights and alpha)", "-b", "--batch-size", **BATCH)
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
    train_portion: float = setting(
        0.5, "fraction of the training images that train the weights", type=Number(float, 0, 1, True, True)
    )
    cutout: int = setting(0, "Cutout square side (0: off)", **NONNEG_INT)
    channels_last: bool = setting(True, "channels-last memory format", **SWITCH)
    seed: int = setting(2, "random seed (DARTS's)", **ANY_INT)


def _loader(dataset, indices: range, cfg: SearchConfig, seed: int, pin: bool) -> DataLoader:
    workers = default_workers() if cfg.workers is None else cfg.workers
    subset = Subset(dataset, indices)
    if len(subset) < cfg.batch_size:
        raise ConfigError(
            f"a search split of {len(subset)} images is smaller than one batch ({cfg.batch_size}); lower --batch-size."
        )
    return DataLoader(
        Reseeded(subset, seed),  # each sample augmented by (seed, epoch, index), whatever the workers did before
        cfg.batch_size,
        sampler=ResumableSampler(len(subset), seed),
        num_workers=workers,
        drop_last=True,
        pin_memory=pin,
        persistent_workers=workers > 0,
        generator=loader_generator(seed),
    )


class SearchTask(Task):
    """DARTS's search as a task of the shared engine: a round is an epoch; each step moves alpha on a batch of
    the held-out half, then the weights on the step's own batch (the engine's optimiser step)."""

    name = "nas-search"
    summary_columns = SUMMARY_COLUMNS
    curves = Curves(
        "NAS search",
        "mobilenext nas search",
        ("epoch", "train_loss", "train_acc", "val_loss", "val_acc"),
        "epoch",
        (("train_loss", "train"), ("val_loss", "held-out half")),
        (("train_acc", "train"), ("val_acc", "held-out half")),
        "accuracy (%)",
        "search loss (held-out: the half that trains the alphas)",
        "search accuracy (held-out: the alpha half)",
    )
    data_parallel = False  # DARTS's alpha step is not data-parallel
    divergence_hint = "Lower --lr or --arch-lr."
    cfg: SearchConfig

    def __init__(self, cfg: SearchConfig, runner: Runner):
        super().__init__(cfg, runner)
        self.ops = resolve_ops(cfg.ops)
        self.device = runner.device
        dataset = open_cifar(cfg.data, "train")
        dataset.transform = cifar_transforms(training=True, cutout=cfg.cutout)
        self.data_description = f"{dataset.name} {cfg.data}"
        weights_part, alpha_part = split_for_search(len(dataset), cfg.train_portion)
        pin = self.device.type == "cuda"
        self.train_loader = _loader(dataset, weights_part, cfg, cfg.seed, pin)
        self.val_loader = _loader(dataset, alpha_part, cfg, cfg.seed + 1, pin)
        network = SearchNetwork(cfg.init_channels, len(dataset.classes), cfg.layers, cfg.nodes, cfg.nodes, self.ops)
        self.model = runner.prepare_model(network)
        self.optimizer = torch.optim.SGD(
            self.model.weight_parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, cfg.epochs, eta_min=cfg.min_lr)
        self.architect = Architect(
            self.model, cfg.arch_lr, cfg.arch_weight_decay, second_order=cfg.unrolled, hessian=cfg.hessian
        )
        self.clip_grad = cfg.grad_clip
        self.genotypes: list[str] = []  # derived after each epoch

    @property
    def run_prefix(self) -> str:
        return RUN_PREFIX

    def identity(self) -> dict[str, Any]:
        return {"model": "darts-supernet", "ops": list(self.ops), **self.model.config}

    def finished(self, rounds: int) -> bool:
        return rounds >= self.cfg.epochs

    def steps(self, index: int) -> int:
        return len(self.train_loader)

    def batches(self, index: int):
        """(weights batch, alpha batch) pairs; the alpha half starts over if it runs out first (a train portion
        above one half)."""
        self.train_loader.sampler.set_epoch(index)
        self.val_loader.sampler.set_epoch(index)
        self.lr = self.optimizer.param_groups[0]["lr"]  # constant within an epoch: the schedule steps per epoch
        return zip(self.train_loader, cycle(self.val_loader))

    def training_step(self, model: nn.Module, batch) -> Step:
        (images, targets), (val_images, val_targets) = batch
        train_batch, val_batch = self._to_device(images, targets), self._to_device(val_images, val_targets)
        arch_loss = self.architect.step(train_batch, val_batch, self.lr, self.optimizer)
        logits = model(train_batch[0])
        loss = F.cross_entropy(logits, train_batch[1])
        n = len(targets)
        correct = (logits.detach().argmax(1) == train_batch[1]).sum()
        sums = {"train_loss": loss.detach() * n, "train_acc": 100.0 * correct, "arch_loss": torch.tensor(arch_loss * n)}
        return Step(loss, n, sums)

    def clipped_parameters(self):
        return self.model.weight_parameters()

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Loss and top-1 of the supernet on the held-out half (the data alpha learns from)."""
        self.model.eval()
        sums = torch.zeros(3, dtype=torch.float64)
        for images, targets in self.val_loader:
            images, targets = self._to_device(images, targets)
            logits = self.model(images)
            sums += torch.tensor(
                [
                    float(F.cross_entropy(logits, targets, reduction="sum")),
                    float((logits.argmax(1) == targets).sum()),
                    len(targets),
                ],
                dtype=torch.float64,
            )
        loss_sum, correct, count = sums.tolist()
        return {"val_loss": loss_sum / count, "val_acc": 100 * correct / count, "score": None}

    def end_round(self, index: int, metrics: dict[str, Any]) -> None:
        self.scheduler.step()

    def _to_device(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, targets.to(self.device, non_blocking=True)

    # ---- records ------------------------------------------------------------------------------------------
    def summary_row(self, index: int, train: dict, metrics: dict, seconds: float) -> dict[str, Any]:
        self.genotypes.append(str(self.model.genotype()))
        return {
            "epoch": index,
            **{k: train[k] for k in ("train_loss", "train_acc", "arch_loss")},
            "lr": self.lr,
            "img_per_sec": round(train["img_per_sec"], 1),
            "val_loss": metrics["val_loss"],
            "val_acc": metrics["val_acc"],
            "epoch_time": round(seconds, 2),
        }

    def round_line(self, row: dict[str, Any]) -> str:
        return (
            f"epoch {row['epoch']:>3}/{self.cfg.epochs}  train_loss {row['train_loss']:.4f}  train_acc "
            f"{row['train_acc']:.2f}  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.2f}  lr "
            f"{row['lr']:.4g}  {row['epoch_time']:.1f}s  {row['img_per_sec']:.0f} img/s\n  {self.genotypes[-1]}"
        )

    def describe(self) -> str:
        cfg = self.cfg
        weights = sum(p.numel() for p in self.model.weight_parameters())
        order = f"second order (unrolled, {cfg.hessian} Hessian)" if cfg.unrolled else "first order"
        return (
            f"DARTS search, {order}, on {self.data_description}: {len(self.train_loader.dataset):,} images for "
            f"the weights, {len(self.val_loader.dataset):,} for alpha; operations {', '.join(self.ops)}; "
            f"supernet {cfg.layers} cells x {cfg.nodes} nodes, {cfg.init_channels} channels, {weights:,} "
            f"weights; {cfg.epochs} epochs x {len(self.train_loader)} steps of {cfg.batch_size}; device "
            f"{self.device}; output {self.runner.output}"
        )

    def progress_text(self) -> str:
        return f"{self.runner.rounds} of {self.cfg.epochs} epochs done"

    def state(self) -> dict[str, Any]:
        return {
            "arch_optimizer": self.architect.optimizer.state_dict(),
            "genotypes": self.genotypes,
            "genotype": self.model.genotype().to_dict(),
            "ops": list(self.ops),
            "supernet": self.model.config,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.architect.optimizer.load_state_dict(state["arch_optimizer"])
        self.genotypes = list(state["genotypes"])

    def write_records(self, output: Path) -> None:
        with atomic_path(output / "genotypes.txt") as tmp:  # the derived cells, epoch by epoch
            tmp.write_text("".join(f"epoch {i}: {g}\n" for i, g in enumerate(self.genotypes)))
        self._write_genotype(output, self.model.genotype(), len(self.genotypes) - 1)

    def result(self) -> dict[str, Any]:
        genotype = self.model.genotype()
        log.info(
            f"genotype {genotype}\n  in {self.runner.output / 'genotype.json'}; evaluate it with "
            f"`mobilenext nas train --genotype {self.runner.output / 'genotype.json'} --data {self.cfg.data}`"
        )
        return {**(self.runner.history[-1] if self.runner.history else {}), "genotype": genotype}

    def _write_genotype(self, output: Path, genotype: Genotype, epoch: int) -> None:
        normal, reduce = (w.detach().cpu() for w in self.model.arch_weights())
        save_genotype(
            genotype,
            output / "genotype.json",
            ops=list(self.ops),
            epochs_searched=epoch + 1,
            search=self.cfg.to_dict(),
            weights={"normal": normal.tolist(), "reduce": reduce.tolist()},
        )
        try:
            from .plot import plot_alphas, plot_genotype

            plot_genotype(genotype, output / "genotype.png", title=f"searched cells, epoch {epoch}")
            plot_alphas(normal, reduce, self.ops, output / "alphas.png", steps=self.cfg.nodes)
        except MissingDependencyError as e:
            if not self.warned_no_plots:
                log.warning(f"no cell pictures: {e}")
                self.warned_no_plots = True

    warned_no_plots = False


def search(cfg: SearchConfig) -> dict[str, Any]:
    """Run the search as ``cfg`` says, in one process; returns the last epoch's metrics and the genotype."""
    return run_task(SearchTask, cfg)
