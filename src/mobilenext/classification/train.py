"""Classification training, the task behind ``mobilenext train``. timm provides the parts (transforms, mixup,
optimizers, schedulers, EMA, losses); the :class:`~mobilenext.engine.runner.Runner` runs the loop, saves,
resumes and distributes. This file only says what is particular to classification: data, model, loss,
evaluation with top-1/top-5 (and the EMA's), the summary columns of the authors' logs.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, distribute_bn
from torch import nn

from ..data import create_loader, create_transforms, open_datasets, resolve_transform_config
from ..data.loader import default_workers
from ..engine.records import Curves
from ..engine.runner import Runner, Step, Task, run_task
from ..errors import ConfigError
from ..models.checkpoint import (
    classifier_classes,
    keep_model_classifier,
    load_checkpoint,
    read_state_dict,
    to_model_layout,
)
from ..models.factory import create_model
from .config import DEFAULT_RECIPE, TrainConfig
from .evaluate import evaluate

__all__ = ["AUTHORS_COLUMNS", "ClassificationTask", "add_arguments", "run", "train"]

log = logging.getLogger("mobilenext")

# The authors' summary.csv columns: our runs and theirs plot and diff alike.
AUTHORS_COLUMNS = ("epoch", "train_loss", "eval_loss", "eval_prec1", "eval_prec5")


class ClassificationTask(Task):
    """Image classification with timm's training parts; ``summary.csv`` starts with the authors' columns."""

    name = "classification"
    length_setting = "epochs"
    summary_columns = AUTHORS_COLUMNS
    curves = Curves(
        "classification",
        "mobilenext train / nas train",
        ("epoch", "train_loss", "eval_loss", "eval_prec1"),
        "epoch",
        (("train_loss", "train"), ("eval_loss", "eval")),
        (("eval_prec1", "top-1"), ("ema_eval_prec1", "EMA top-1")),
        "top-1 (%)",
        "loss (train: with label smoothing)",
        "held-out top-1",
        takes_reference=True,
    )
    score_name = "top-1"
    divergence_hint = "Lower --lr, add --warmup-epochs or --clip-grad."
    cfg: TrainConfig

    def __init__(self, cfg: TrainConfig, runner: Runner):
        super().__init__(cfg, runner)
        self.dist = runner.dist
        self.datasets = open_datasets(cfg.data, cfg.dataset, cfg.train_split, cfg.val_split)
        if self.datasets.train is None:
            raise ConfigError("no training split; pass --train-split.")
        # The dataset's own defaults fill whatever the user and the config left unset.
        unset = {k: v for k, v in self.datasets.defaults.items() if getattr(cfg, k) is None}
        self.cfg = cfg = dataclasses.replace(cfg, **unset)
        runner.cfg = cfg
        self.num_classes = cfg.num_classes or len(self.datasets.classes)
        if not self.num_classes:
            raise ConfigError("this dataset does not list its classes; pass --num-classes.")
        if len(self.datasets.classes) == 1 or self.num_classes == 1:
            only = f" ({self.datasets.classes[0]})" if self.datasets.classes else ""
            raise ConfigError(
                f"{self.datasets.description} has one class{only}: every image would be scored right; a "
                "classifier needs at least two classes."
            )
        self.device = runner.device
        self.model = runner.prepare_model(self._build_model())
        self.data_config = resolve_transform_config(self.model, {}, dataclasses.asdict(cfg))
        self.train_loader, self.val_loader = self._build_loaders()
        self.lr = cfg.global_lr(self.dist.world_size)
        self.optimizer = create_optimizer_v2(
            self.model,
            opt=cfg.opt,
            lr=self.lr,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            filter_bias_and_bn=not cfg.weight_decay_all,
            **({"eps": cfg.opt_eps} if cfg.opt_eps is not None else {}),
        )
        self.scheduler, self.num_epochs = create_scheduler_v2(
            self.optimizer,
            sched=cfg.sched,
            num_epochs=cfg.epochs,
            decay_epochs=cfg.decay_epochs,
            decay_rate=cfg.decay_rate,
            min_lr=cfg.min_lr,
            warmup_lr=cfg.warmup_lr,
            warmup_epochs=cfg.warmup_epochs,
            cooldown_epochs=cfg.cooldown_epochs,
            updates_per_epoch=len(self.train_loader),
        )
        self.clip_grad = cfg.clip_grad
        self.ema = ModelEmaV3(self.model, decay=cfg.model_ema_decay) if cfg.model_ema else None
        self.mixup = self._build_mixup()
        self.train_loss = (
            SoftTargetCrossEntropy()
            if self.mixup
            else LabelSmoothingCrossEntropy(cfg.smoothing)
            if cfg.smoothing > 0
            else nn.CrossEntropyLoss()
        )
        self.num_updates = 0

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
            load_checkpoint(model, state_dict, filter_fn=keep_model_classifier if reset else None)
        if reset and self.dist.is_main:
            log.info(
                f"fine-tuning: {path} has a {source_classes}-class classifier; it is replaced by a new "
                f"{self.num_classes}-class one, trained from scratch."
            )

    def transforms(self):
        """(train, eval) transforms: timm's, with this run's augmentation settings."""
        cfg = self.cfg
        augment = {
            "scale": cfg.scale,
            "ratio": cfg.ratio,
            "hflip": cfg.hflip,
            "color_jitter": cfg.color_jitter,
            "auto_augment": cfg.aa,
            "re_prob": cfg.reprob,
            "re_mode": cfg.remode,
            "re_count": cfg.recount,
        }
        return create_transforms(self.data_config, {k: v for k, v in augment.items() if v is not None})

    def _build_loaders(self):
        cfg = self.cfg
        train_tf, eval_tf = self.transforms()
        self.datasets.train.transform, self.datasets.val.transform = train_tf, eval_tf
        common = dict(
            workers=default_workers() if cfg.workers is None else cfg.workers,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            pin_memory=self.device.type == "cuda",
        )
        train = create_loader(self.datasets.train, cfg.batch_size, training=True, seed=cfg.seed, **common)
        val = create_loader(self.datasets.val, cfg.batch_size, training=False, **common)
        if len(train) == 0:
            raise ConfigError(
                f"the training split has fewer images ({len(self.datasets.train)}) than one global "
                f"batch ({cfg.batch_size} x {self.dist.world_size}); lower --batch-size."
            )
        return train, val

    def _build_mixup(self) -> Mixup | None:
        cfg = self.cfg
        if cfg.mixup <= 0 and cfg.cutmix <= 0:
            return None
        if cfg.batch_size % 2:
            raise ConfigError(f"mixup/cutmix pairs images in a batch; use an even --batch-size, not {cfg.batch_size}.")
        return Mixup(
            mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing, num_classes=self.num_classes
        )

    # ---- the task's part of the loop ---------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {"model": self.cfg.model, "num_classes": self.num_classes, **self.model_kwargs()}

    def finished(self, rounds: int) -> bool:
        return rounds >= self.num_epochs

    def steps(self, index: int) -> int:
        return len(self.train_loader)

    def batches(self, index: int):
        self.train_loader.sampler.set_epoch(index)
        return self.train_loader

    def training_step(self, model: nn.Module, batch) -> Step:
        images, targets, problems = batch
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        if self.mixup is not None:
            images, targets = self.mixup(images, targets)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss = self.loss(model(images), targets)
        return Step(loss, len(images), {"train_loss": loss.detach() * len(images)}, problems)

    def loss(self, output: Any, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch's model output (a subclass may add auxiliary terms)."""
        return self.train_loss(output, targets)

    def after_step(self) -> None:
        self.num_updates += 1
        self.scheduler.step_update(self.num_updates)
        if self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)

    def evaluate(self) -> dict[str, Any]:
        """The model, and its EMA when kept; ``score`` (what picks the best checkpoint) follows timm: EMA if any."""
        common = dict(amp=self.cfg.amp, channels_last=self.cfg.channels_last, progress=self.dist.is_main)
        if self.dist.distributed:
            # Each rank's last training forward updated its own BatchNorm statistics (DDP broadcasts them only
            # at the next forward): average them, timm's --dist-bn reduce, so that every rank's shard is
            # measured with the statistics the checkpoint saves.
            for model in [self.model] + ([self.ema.module] if self.ema is not None else []):
                distribute_bn(model, self.dist.world_size, reduce=True)
        metrics = {"model": evaluate(self.model, self.val_loader, self.device, **common)}
        if self.ema is not None:
            metrics["ema"] = evaluate(self.ema.module, self.val_loader, self.device, **common)
        metrics["score"] = metrics["ema" if self.ema is not None else "model"]["top1"]
        metrics["skipped_names"] = metrics["model"]["skipped_names"]
        return metrics

    def end_round(self, index: int, metrics: dict[str, Any]) -> None:
        self.scheduler.step(index + 1, metrics["score"])

    # ---- records ------------------------------------------------------------------------------------------
    def summary_row(self, index: int, train: dict, metrics: dict, seconds: float) -> dict[str, Any]:
        model = metrics["model"]
        row = {
            "epoch": index,
            "train_loss": train["train_loss"],
            "eval_loss": model["loss"],
            "eval_prec1": model["top1"],
            "eval_prec5": model["top5"],
        }
        if "ema" in metrics:
            ema = metrics["ema"]
            row.update(ema_eval_loss=ema["loss"], ema_eval_prec1=ema["top1"], ema_eval_prec5=ema["top5"])
        row.update(
            lr=self.optimizer.param_groups[0]["lr"],
            epoch_time=round(seconds, 2),
            train_img_per_sec=round(train["img_per_sec"], 1),
            skipped_images=train["skipped"] + model["skipped"],
        )
        return row

    def round_line(self, row: dict[str, Any]) -> str:
        line = (
            f"epoch {row['epoch']:>3}/{self.num_epochs}  train_loss {row['train_loss']:.4f}  "
            f"eval_loss {row['eval_loss']:.4f}  top1 {row['eval_prec1']:.2f}  top5 {row['eval_prec5']:.2f}"
        )
        if "ema_eval_prec1" in row:
            line += f"  ema_top1 {row['ema_eval_prec1']:.2f}"
        return line + f"  lr {row['lr']:.4g}  {row['epoch_time']:.1f}s  {row['train_img_per_sec']:.0f} img/s"

    def memory_probe(self) -> tuple[nn.Module, tuple[int, ...], int, str]:
        size = self.data_config["img_size"]
        return self.model, (3, size, size), self.cfg.batch_size, "--batch-size or --img-size"

    def describe(self) -> str:
        cfg, d = self.cfg, self.data_config
        return (
            f"{cfg.model} ({sum(p.numel() for p in self.model.parameters()):,} params) on {self.datasets.description}: "
            f"{len(self.datasets.train):,} train / {len(self.datasets.val):,} held-out images, {self.num_classes} "
            f"classes, {d['img_size']} px; {self.num_epochs} epochs x {len(self.train_loader)} steps, batch "
            f"{cfg.batch_size} x {self.dist.world_size} process(es), {cfg.opt} lr {self.lr:.4g}, {cfg.sched}; "
            f"device {self.device}; output {self.runner.output}"
        )

    def progress_text(self) -> str:
        return f"epoch {self.runner.rounds}, {self.num_updates} optimizer steps done"

    def settings(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "lr": self.lr}

    def state(self) -> dict[str, Any]:
        state = {
            "classes": list(self.datasets.classes),
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()},
            "model_kwargs": self.model_kwargs(),
            "epoch": self.runner.rounds,  # epochs completed
            "num_updates": self.num_updates,
        }
        if self.ema is not None:
            state["state_dict_ema"] = self.ema.module.state_dict()
        return state

    def load_scheduler(self, state: dict[str, Any], rounds: int, length_changed: bool) -> None:
        if length_changed and self.cfg.sched != "plateau":
            # timm's schedules are functions of the epoch: the one built for the new --epochs, at this epoch
            self.scheduler.step(rounds)
        else:
            self.scheduler.load_state_dict(state)

    def load_state(self, state: dict[str, Any]) -> None:
        self.num_updates = state["num_updates"]
        if self.ema is not None:
            if "state_dict_ema" not in state:
                raise ConfigError("cannot resume with --model-ema: the run was trained without EMA; drop the flag.")
            self.ema.module.load_state_dict(state["state_dict_ema"])

    def result(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates}


def train(cfg: TrainConfig, task: type[ClassificationTask] = ClassificationTask) -> dict[str, Any]:
    """Train as ``cfg`` says (with ``task``, :class:`ClassificationTask` or a subclass); works under ``torchrun``
    (DDP) and as a plain process."""
    return run_task(task, cfg)


def add_arguments(parser) -> None:
    """``mobilenext train``'s flags: one per :class:`TrainConfig` setting, plus ``--config``."""
    from ..engine.config import add_config_arguments

    add_config_arguments(parser, TrainConfig)


def run(args) -> int:
    from ..engine.config import config_from_args

    train(config_from_args(args, TrainConfig, DEFAULT_RECIPE))
    return 0
