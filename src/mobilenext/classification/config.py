"""``mobilenext train``'s settings: timm's ``train.py`` vocabulary and defaults (300 epochs, batch 128, SGD at lr
0.1 per 256 images, weight decay 2e-5, 5 warm-up epochs, cosine), one dataclass for the flags and the YAML keys.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..checks import SCHEDULER, Number
from ..engine.config import (
    BATCH,
    COUNT,
    EPOCHS,
    FRACTION,
    IMAGE_SIZE,
    INTERPOLATION,
    NONNEG,
    NONNEG_INT,
    OPTIMIZER,
    POSITIVE,
    PROBABILITY,
    SWITCH,
    DataParallelSettings,
    add_config_arguments,
    config_from_args,
    setting,
)

__all__ = ["DEFAULT_RECIPE", "TrainConfig", "parse_train_args"]

DEFAULT_RECIPE = "digits"  # what `mobilenext train` runs when given neither --config nor --data


@dataclass
class TrainConfig(DataParallelSettings):
    # model
    model: str = setting("mobilenext_100", "model name (`mobilenext models`); any timm model works too")
    pretrained: str | None = setting(None, "initial weights file (fine-tuning)", "--pretrained", "--initial-checkpoint")
    num_classes: int | None = setting(None, "default: the dataset's number of classes", **COUNT)
    drop: float | None = setting(None, "classifier dropout (default: the model's; 0.2 for MobileNeXt)", **FRACTION)
    drop_path: float | None = setting(None, "stochastic depth rate (drop-connect in the authors' args)", **FRACTION)
    # data
    data: str | None = setting(None, "dataset folder, .tar or CIFAR folder; omit for the embedded digits")
    dataset: str = setting("", "timm dataset name for other sources (hfds/NAME, wds/NAME, tfds/NAME)")
    train_split: str = setting("train", "training split (folder name or timm split)")
    val_split: str | None = setting(None, "held-out split (default: val/ or validation/)")
    img_size: int | None = setting(None, "input resolution (default: the dataset's, else the model's)", **IMAGE_SIZE)
    crop_pct: float | None = setting(None, "evaluation centre-crop fraction", type=Number(float, 0, 1, low_open=True))
    interpolation: str | None = setting(None, "resize interpolation (bilinear, bicubic, ...)", **INTERPOLATION)
    mean: tuple[float, ...] | None = setting(None, "normalisation mean (3 values)", type=Number(float), nargs=3)
    std: tuple[float, ...] | None = setting(None, "normalisation std (3 values)", nargs=3, **POSITIVE)
    # augmentation (timm's)
    scale: tuple[float, ...] | None = setting(
        None, "random-resized-crop area range (default 0.08 1)", nargs=2, type=Number(float, 0, 1, low_open=True)
    )
    ratio: tuple[float, ...] | None = setting(
        None, "random-resized-crop aspect range (default 3/4 4/3)", nargs=2, **POSITIVE
    )
    hflip: float | None = setting(None, "horizontal flip probability (default 0.5; 0 for digits)", **PROBABILITY)
    color_jitter: float | None = setting(None, "colour jitter strength (default 0.4)", **NONNEG)
    aa: str | None = setting(None, "auto-augment policy, e.g. rand-m9-mstd0.5")
    reprob: float = setting(0.0, "random erasing probability", **PROBABILITY)
    remode: str = setting("pixel", "random erasing mode", choices=("pixel", "rand", "const"))
    recount: int = setting(1, "random erasing count", **COUNT)
    mixup: float = setting(0.0, "mixup alpha (0: off)", **NONNEG)
    cutmix: float = setting(0.0, "cutmix alpha (0: off)", **NONNEG)
    smoothing: float = setting(0.1, "label smoothing", **FRACTION)
    # optimisation
    epochs: int = setting(300, "epochs to train", **EPOCHS)
    batch_size: int = setting(128, "batch size per process", "-b", "--batch-size", **BATCH)
    lr: float | None = setting(None, "learning rate (default: lr_base scaled to the global batch size)", **POSITIVE)
    lr_base: float = setting(0.1, "learning rate at global batch size lr_base_size", **POSITIVE)
    lr_base_size: int = setting(256, "global batch size lr_base refers to", **COUNT)
    lr_base_scale: str = setting(
        "auto",
        "how lr grows with the batch size (auto: sqrt for Adam-like optimizers, else linear)",
        choices=("auto", "linear", "sqrt"),
    )
    opt: str = setting("sgd", "timm optimizer name (sgd, rmsproptf, adamw, ...)", **OPTIMIZER)
    opt_eps: float | None = setting(None, "optimizer epsilon", **POSITIVE)
    momentum: float = setting(0.9, "optimizer momentum", **FRACTION)
    weight_decay: float = setting(
        2e-5, "weight decay (not applied to biases and norms, unless --weight-decay-all)", **NONNEG
    )
    weight_decay_all: bool = setting(
        False, "apply weight decay to biases and norm weights too (as DARTS does)", **SWITCH
    )
    clip_grad: float | None = setting(None, "clip gradient norm to this value", **POSITIVE)
    sched: str = setting("cosine", "timm scheduler (cosine, step, ...)", type=SCHEDULER)
    warmup_epochs: int = setting(5, "linear warm-up epochs", **NONNEG_INT)
    warmup_lr: float = setting(1e-5, "learning rate at the start of warm-up", **NONNEG)
    min_lr: float = setting(0.0, "floor of the learning rate", **NONNEG)
    cooldown_epochs: int = setting(0, "epochs at min_lr after the schedule ends (added to epochs)", **NONNEG_INT)
    decay_epochs: float = setting(90, "step scheduler: epochs between decays", **POSITIVE)
    decay_rate: float = setting(0.1, "step scheduler: decay factor", type=Number(float, 0, 1, low_open=True))
    model_ema: bool = setting(False, "keep an exponential moving average of the weights", **SWITCH)
    model_ema_decay: float = setting(0.9998, "EMA decay per step", type=Number(float, 0, 1, True, True))
    # runtime
    channels_last: bool = setting(True, "channels-last memory format (3-4x faster depthwise convs on CPU)", **SWITCH)
    compile: bool = setting(False, "torch.compile the model", **SWITCH)

    def global_lr(self, world_size: int) -> float:
        """``lr`` if set, else ``lr_base`` scaled from ``lr_base_size`` to this run's global batch size."""
        if self.lr is not None:
            return self.lr
        ratio = self.batch_size * world_size / self.lr_base_size
        scale = self.lr_base_scale
        if scale == "auto":  # timm's train.py rule
            scale = "sqrt" if any(name in self.opt.lower() for name in ("ada", "lamb")) else "linear"
        return self.lr_base * (math.sqrt(ratio) if scale == "sqrt" else ratio)


def parse_train_args(argv: Sequence[str]) -> TrainConfig:
    """Parse a ``mobilenext train`` command line (for scripts and tests)."""
    parser = argparse.ArgumentParser(prog="mobilenext train")
    add_config_arguments(parser, TrainConfig)
    return config_from_args(parser.parse_args(argv), TrainConfig, DEFAULT_RECIPE)
