"""Run settings: for every training task, one dataclass is the single source of its CLI flags, its YAML keys
and their defaults (:func:`setting`), with the same value checks for both.

Precedence, lowest to highest: a task's defaults, what the task derives from its data (e.g. 32 px for the
digits), a ``--config`` file, flags given on the command line. The settings every task shares are declared
once here (:class:`RunSettings`, :class:`DataParallelSettings`); each task declares its own beside its code.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
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
    "SWITCH",
    "Settings",
    "add_config_arguments",
    "config_from_args",
    "find_config",
    "list_configs",
    "load_config",
    "setting",
    "settings_dict",
]

# Settings that name input files: stored absolute, so a checkpoint's record finds them from any directory.
PATH_SETTINGS = ("data", "pretrained", "backbone_checkpoint", "genotype")


def setting(default: Any, help: str, *flags: str, **kwargs: Any):
    """A setting: ``flags`` override the derived ``--name-with-dashes``; ``kwargs`` go to ``add_argument``."""
    return field(default=default, metadata={"help": help, "flags": flags, **kwargs})


# Value checks (``mobilenext.checks``): a flag or YAML key outside its range stops the command in one sentence.
SWITCH = {"action": argparse.BooleanOptionalAction}  # --flag / --no-flag
COUNT = {"type": checks.COUNT}
NONNEG_INT = {"type": checks.NONNEG_INT}
IMAGE_SIZE = {"type": checks.IMAGE_SIZE}
EPOCHS = {"type": checks.EPOCHS}
ITERATIONS = {"type": checks.ITERATIONS}
BATCH = {"type": checks.BATCH}
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

    amp: bool = setting(False, "mixed precision (float16 on GPU, bfloat16 on CPU)", **SWITCH)
    sync_bn: bool = setting(
        False, "synchronise BatchNorm statistics across GPUs under DDP (timm's conversion, activations kept)", **SWITCH
    )


RUN_SETTINGS = frozenset(f.name for f in dataclasses.fields(DataParallelSettings))


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as plain YAML-able values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()}


def _fields(schema: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(schema)}


def add_config_arguments(parser: argparse.ArgumentParser, schema: type) -> None:
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


class _DuplicateKey(yaml.YAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (YAML 1.2 forbids it;
    PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(f"key {key!r} given twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def load_config(path: str | Path, schema: type) -> dict[str, Any]:
    """Settings from a YAML file; keys may use dashes or underscores (one spelling per setting); unknown or
    repeated keys are an error."""
    fields = _fields(schema)
    path = find_config(str(path))
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader) or {}  # noqa: S506 (safe loader)
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {e.start}); save it as UTF-8.") from None
    except _DuplicateKey as e:
        raise ConfigError(f"config {path}: {e}; keep one.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML ({str(e).splitlines()[0]}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping of setting: value.")
    settings, spelled = {}, {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the command's --help lists the settings."
            raise ConfigError(f"config {path}: unknown key {key!r}; {hint}")
        if name in spelled:
            raise ConfigError(f"config {path}: {spelled[name]!r} and {key!r} are one setting; keep one.")
        spelled[name] = key
        settings[name] = _coerce(fields[name], value, f"config {path}")
    return settings


def config_from_args(args: argparse.Namespace | dict[str, Any], schema: type, default_recipe: str | None = None) -> Any:
    """Merge defaults < config file < flags into a ``schema`` instance; ``default_recipe`` is the config used
    when neither ``--config`` nor ``--data`` is given (``mobilenext train``: the embedded digits' recipe)."""
    given = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    for cli_only in ("func", "command", "out"):  # the CLI's own entries, not settings
        given.pop(cli_only, None)
    config = given.pop("config", None)
    if config is None and given.get("data") is None:
        config = default_recipe
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
