"""Training: the shared engine (:mod:`.runner`), the classification task on it, evaluation and validation."""

from ..errors import TrainingDiverged
from .config import TrainConfig, config_from_args, list_configs, load_config, parse_train_args
from .evaluate import evaluate
from .runner import Runner, Task, run_task
from .train import ClassificationTask, train
from .validate import validate

__all__ = [
    "ClassificationTask",
    "Runner",
    "Task",
    "TrainConfig",
    "TrainingDiverged",
    "config_from_args",
    "evaluate",
    "list_configs",
    "load_config",
    "parse_train_args",
    "run_task",
    "train",
    "validate",
]
