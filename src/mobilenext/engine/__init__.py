"""Training and evaluation loops (timm's parts, tied together here)."""

from .config import TrainConfig, config_from_args, list_configs, load_config, parse_train_args
from .evaluate import evaluate
from .train import Trainer, TrainingDiverged, train
from .validate import validate

__all__ = [
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "config_from_args",
    "evaluate",
    "list_configs",
    "load_config",
    "parse_train_args",
    "train",
    "validate",
]
