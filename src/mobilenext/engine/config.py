"""Training settings: one dataclass is the single source of the CLI flags, the YAML keys and their defaults.

Precedence, lowest to highest: the defaults below, the dataset's own defaults (e.g. 32 px for the digits),
a ``--config`` file, flags given on the command line. Flag names and defaults follow timm's ``train.py``
(300 epochs, batch 128, SGD at lr 0.1 per 256 images, weight decay 2e-5, 5 warm-up epochs, cosine).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .. import checks
from ..checks import Number
from ..errors import ConfigError

__all__ = [
    "DataParallelSettings",
    "RunSettings",
    "Settings",
    "TrainConfig",
    "add_config_arguments",
    "config_from_args",
    "find_config",
    "list_configs",
    "load_config",
    "parse_train_args",
    "setting",
    "settings_dict",
]

# Settings that name input files: stored absolute, so a checkpoint's record finds them from any directory.
PATH_SETTINGS = ("data", "pretrained", "backbone_checkpoint", "genotype")

DEFAULT_CONFIG = "digits"  # what `mobilenext train` runs when given neither --config nor --data


def setting(default: Any, help: str, *flags: str, **kwargs: Any):
    """A setting: ``flags`` override the derived ``--name-with-dashes``; ``kwargs`` go to ``add_argument``."""
    return field(default=default, metadata={"help": help, "flags": flags, **kwargs})


# Value checks (``mobilenext.checks``): a flag or YAML key outside its range stops the command in one sentence.
_BOOL = {"action": argparse.BooleanOptionalAction}
COUNT = {"type": checks.COUNT}
NONNEG_INT = {"type": checks.NONNEG_INT}
POSITIVE = {"type": Number(float, low=0, low_open=True)}  # learning rates, epsilons
NONNEG = {"type": Number(float, low=0)}  # weight decay, augmentation strengths
PROBABILITY = {"type": Number(float, 0, 1)}
FRACTION = {"type": Number(float, 0, 1, high_open=True)}  # dropout, smoothing, momentum: 1 would be degenerate
ANY_INT = {"type": Number(int)}
DEVICE = {"type": checks.device}
OPTIMIZER = {"type": checks.OPTIMIZER}
INTERPOLATION = {"type": checks.INTERPOLATION}


class Settings:
    """Base of the settings dataclasses (training, detection, search): plain YAML-able values for args.yaml
    and checkpoints, and the checks that involve more than one value."""

    def to_dict(self) -> dict[str, Any]:
        return settings_dict(self)

    def check(self) -> None:
        """Raise :class:`ConfigError` for settings that are each valid but not together (run before any work)."""
        output = getattr(self, "output", None)
        if output and Path(output).exists() and not Path(output).is_dir():
            raise ConfigError(f"--output {output} is a file; give a folder for the run.")
        for name in ("scale", "ratio"):
            pair = getattr(self, name, None)
            if pair is not None and pair[0] > pair[1]:
                raise ConfigError(f"--{name} {pair[0]:g} {pair[1]:g}: the first value is the lower bound.")


@dataclass
class RunSettings(Settings):
    """What every training command has (classification, detection, search), declared once here."""

    device: str | None = setting(None, "cuda or cpu (default: cuda when available)", **DEVICE)
    seed: int = setting(42, "random seed", **ANY_INT)
    output: str | None = setting(None, "run folder (default: a new runs/<model>-<date>-<time>)")
    resume: str | None = setting(
        None,
        "checkpoint to continue, or 'auto': the --output folder's last.pth (without "
        "--output, the newest run of the same model in runs/)",
    )
    workers: int | None = setting(
        None, "data loader processes per rank (default: up to 4, one per core)", "-j", "--workers", **NONNEG_INT
    )
    log_interval: int = setting(50, "steps between progress reports when not on a terminal", **COUNT)


@dataclass
class DataParallelSettings(RunSettings):
    """What the data-parallel tasks (classification, detection) add: mixed precision and SyncBatchNorm."""

    amp: bool = setting(False, "mixed precision (float16 on GPU, bfloat16 on CPU)", **_BOOL)
    sync_bn: bool = setting(
        False, "synchronise BatchNorm statistics across GPUs under DDP (timm's conversion, activations kept)", **_BOOL
    )


RUN_SETTINGS = frozenset(f.name for f in dataclasses.fields(DataParallelSettings))


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
    img_size: int | None = setting(None, "input resolution (default: the dataset's, else the model's)", **COUNT)
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
    epochs: int = setting(300, "epochs to train", **COUNT)
    batch_size: int = setting(128, "batch size per process", "-b", "--batch-size", **COUNT)
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
        False, "apply weight decay to biases and norm weights too (as DARTS does)", **_BOOL
    )
    clip_grad: float | None = setting(None, "clip gradient norm to this value", **POSITIVE)
    sched: str = setting("cosine", "timm scheduler (cosine, step, ...)", type=checks.SCHEDULER)
    warmup_epochs: int = setting(5, "linear warm-up epochs", **NONNEG_INT)
    warmup_lr: float = setting(1e-5, "learning rate at the start of warm-up", **NONNEG)
    min_lr: float = setting(0.0, "floor of the learning rate", **NONNEG)
    cooldown_epochs: int = setting(0, "epochs at min_lr after the schedule ends (added to epochs)", **NONNEG_INT)
    decay_epochs: float = setting(90, "step scheduler: epochs between decays", **POSITIVE)
    decay_rate: float = setting(0.1, "step scheduler: decay factor", type=Number(float, 0, 1, low_open=True))
    model_ema: bool = setting(False, "keep an exponential moving average of the weights", **_BOOL)
    model_ema_decay: float = setting(0.9998, "EMA decay per step", type=Number(float, 0, 1, True, True))
    # runtime
    channels_last: bool = setting(True, "channels-last memory format (3-4x faster depthwise convs on CPU)", **_BOOL)
    compile: bool = setting(False, "torch.compile the model", **_BOOL)

    def global_lr(self, world_size: int) -> float:
        """``lr`` if set, else ``lr_base`` scaled from ``lr_base_size`` to this run's global batch size."""
        if self.lr is not None:
            return self.lr
        ratio = self.batch_size * world_size / self.lr_base_size
        scale = self.lr_base_scale
        if scale == "auto":  # timm's train.py rule
            scale = "sqrt" if any(name in self.opt.lower() for name in ("ada", "lamb")) else "linear"
        return self.lr_base * (math.sqrt(ratio) if scale == "sqrt" else ratio)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as plain YAML-able values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()}


def _fields(schema: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(schema)}


def add_config_arguments(parser: argparse.ArgumentParser, schema: type = TrainConfig) -> None:
    """Add ``--config`` and one flag per field of ``schema`` (a settings dataclass built with :func:`setting`);
    flags not given stay absent, so a config file's values survive."""
    parser.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help=f"YAML recipe: a file or a packaged name ({', '.join(list_configs())})",
    )
    run_group = parser.add_argument_group("run settings (shared by every training command)")
    for name, f in _fields(schema).items():
        meta = dict(f.metadata)
        flags = meta.pop("flags") or ("--" + name.replace("_", "-"),)
        default = f.default if f.default is not None else "unset"
        meta["help"] += f" [{default}]" if "action" not in meta else ""
        group = run_group if name in RUN_SETTINGS else parser
        group.add_argument(*flags, dest=name, default=argparse.SUPPRESS, **meta)


def list_configs() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files("mobilenext.configs").iterdir()
        if p.name.endswith(".yaml")
    )


def find_config(name_or_path: str) -> Path:
    """A YAML file by path, or a recipe shipped with the package by name (``mobilenext_100_imagenet``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = resources.files("mobilenext.configs").joinpath(f"{name_or_path.removesuffix('.yaml')}.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    raise ConfigError(f"config {name_or_path} is neither a file nor a packaged recipe ({', '.join(list_configs())}).")


def _coerce(field_: dataclasses.Field, value: Any, source: str) -> Any:
    """Check a config value as its flag would be checked, with one sentence per mistake."""
    name, meta = field_.name, field_.metadata
    if value is None:
        return None
    check = meta.get("type", str)
    try:
        if meta.get("action") is argparse.BooleanOptionalAction:
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if "nargs" in meta:
            count = meta["nargs"]
            if not isinstance(value, (list, tuple)) or (len(value) != count if count != "+" else not value):
                kind = "numbers" if isinstance(check, Number) else "values"
                raise ValueError(f"expected a list of {'one or more' if count == '+' else count} {kind}")
            return tuple(check(v) for v in value)
        value = check(value)
        if "choices" in meta and value not in meta["choices"]:
            raise ValueError(f"expected one of {', '.join(meta['choices'])}")
        return value
    except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
        raise ConfigError(f"{source}: {name}: {value!r} is not valid ({e}).") from None


def load_config(path: str | Path, schema: type = TrainConfig) -> dict[str, Any]:
    """Settings from a YAML file; keys may use dashes or underscores; unknown keys are an error."""
    fields = _fields(schema)
    path = find_config(str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {e.start}); save it as UTF-8.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML ({str(e).splitlines()[0]}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping of setting: value.")
    settings = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the command's --help lists the settings."
            raise ConfigError(f"config {path}: unknown key {key!r}; {hint}")
        settings[name] = _coerce(fields[name], value, f"config {path}")
    return settings


def config_from_args(
    args: argparse.Namespace | dict[str, Any], default_recipe: bool = True, schema: type = TrainConfig
) -> Any:
    """Merge defaults < config file < flags into a ``schema`` instance. For training without ``--config``
    or ``--data`` the digits recipe applies."""
    given = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    for cli_only in ("func", "command", "out"):  # the CLI's own entries, not settings
        given.pop(cli_only, None)
    config = given.pop("config", None)
    if config is None and given.get("data") is None and default_recipe and schema is TrainConfig:
        config = DEFAULT_CONFIG
    settings = load_config(config, schema) if config else {}
    unknown = set(given) - set(_fields(schema))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))}.")
    settings.update(given)
    for name in PATH_SETTINGS:
        if isinstance(settings.get(name), str) and Path(settings[name]).exists():
            settings[name] = str(Path(settings[name]).resolve())  # what a checkpoint stores must not depend on cwd
    if settings.get("resume") and "pretrained" in given and "resume" in given:
        raise ConfigError(
            "--pretrained and --resume exclude each other: a resumed run continues its own weights; drop one of them."
        )
    settings = schema(**settings)
    settings.check()
    return settings


def parse_train_args(argv: Sequence[str]) -> TrainConfig:
    """Parse a ``mobilenext train`` command line (for scripts and tests)."""
    parser = argparse.ArgumentParser(prog="mobilenext train")
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv))
