"""``mobilenext nas train``: train the evaluation network of a genotype on CIFAR, the DARTS way.

It is ``mobilenext train`` (the same loop, flags, checkpoints, resume and DDP) with what DARTS's
evaluation adds: the network built from a genotype, an auxiliary classifier weighted 0.4, drop-path
whose rate rises linearly over the epochs, and pad-crop + flip + Cutout augmentation. The recipe,
``configs/darts_cifar10.yaml``, is DARTS's: 600 epochs, batch 96, SGD 0.025 cosine, weight decay 3e-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..classification.config import TrainConfig
from ..classification.train import ClassificationTask, train
from ..engine.config import COUNT, NONNEG, NONNEG_INT, SWITCH, setting
from ..errors import ConfigError
from .data import cifar_transforms
from .genotypes import load_genotype
from .network import count_network_params

__all__ = ["NasTrainConfig", "NasTrainTask", "train_network", "DEFAULT_RECIPE"]

DEFAULT_RECIPE = "darts_cifar10"  # what `mobilenext nas train` runs without --config


@dataclass
class NasTrainConfig(TrainConfig):
    model: str = setting("darts_cifar", "network (darts_cifar: DARTS's CIFAR network built from --genotype)")
    genotype: str = setting("DARTS_V2", "built-in genotype (DARTS_V1, DARTS_V2), JSON file, or Genotype(...) text")
    init_channels: int = setting(36, "channels of the first cells", **COUNT)
    layers: int = setting(20, "cells", **COUNT)
    auxiliary: bool = setting(True, "auxiliary classifier at 2/3 of the depth", **SWITCH)
    auxiliary_weight: float = setting(0.4, "weight of the auxiliary loss", **NONNEG)
    cutout: int = setting(16, "Cutout square side (0: off)", **NONNEG_INT)


class NasTrainTask(ClassificationTask):
    cfg: NasTrainConfig

    def __init__(self, cfg: NasTrainConfig, runner):
        if cfg.data is None:
            raise ConfigError("nas train runs on CIFAR: pass --data with the folder of cifar-10-batches-py.")
        self.genotype = load_genotype(cfg.genotype)
        super().__init__(cfg, runner)

    def model_kwargs(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "genotype": self.genotype.to_dict(),
            "init_channels": cfg.init_channels,
            "layers": cfg.layers,
            "auxiliary": cfg.auxiliary,
        }

    def transforms(self):
        return cifar_transforms(training=True, cutout=self.cfg.cutout), cifar_transforms(training=False)

    def loss(self, output: Any, targets: torch.Tensor) -> torch.Tensor:
        if isinstance(output, tuple):  # (logits, auxiliary logits) in training
            logits, aux_logits = output
            return self.train_loss(logits, targets) + self.cfg.auxiliary_weight * self.train_loss(aux_logits, targets)
        return self.train_loss(output, targets)

    def batches(self, index: int):
        model = self.model
        model.drop_path_prob = model.drop_path_rate * index / self.num_epochs  # DARTS: 0 -> rate, linearly
        return super().batches(index)

    def describe(self) -> str:
        return (
            f"{super().describe()}\n  genotype {self.genotype}\n  {count_network_params(self.model):,} "
            "params without the auxiliary head (as DARTS counts them)"
        )


def train_network(cfg: NasTrainConfig) -> dict[str, Any]:
    """Train as ``cfg`` says; works under ``torchrun`` (DDP) and as a plain process."""
    return train(cfg, NasTrainTask)
