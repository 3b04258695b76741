"""The authors' ImageNet training curves (their ``summary.csv`` files), shipped for comparison plots."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

from ..errors import ConfigError

__all__ = ["REFERENCE_RUNS", "read_summary", "reference_summary"]

# run name -> what it trained (best top-1 from the same file)
REFERENCE_RUNS = {
    "74_02_full_id_tensor": "MobileNeXt-1.0, full identity (mobilenext_100)",
    "74_09_i2rnetv3_half_id": "MobileNeXt-1.0, half identity (mobilenext_100_half_id)",
    "4_29M_76_6": "EfficientNet-based 4.29M (mobilenext_efficient_l)",
    "5_68M_76_8": "EfficientNet-based 5.68M (mobilenext_efficient_xl)",
    "76_05_3_94_model": "EfficientNet-based 3.94M (architecture not logged)",
}


def read_summary(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``summary.csv`` (ours or the authors'), numbers as floats."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; a run folder holds summary.csv after its first epoch.")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in rows]
    except ValueError as e:
        raise ConfigError(f"{path} is not a summary.csv of numbers ({e}).") from None


def reference_summary(name: str) -> list[dict[str, float]]:
    """The authors' curve ``name`` (a key of :data:`REFERENCE_RUNS`)."""
    if name not in REFERENCE_RUNS:
        raise ConfigError(f"unknown reference run {name!r}; choose from {', '.join(REFERENCE_RUNS)}.")
    with resources.as_file(resources.files(__package__).joinpath(f"files/reference_runs/{name}.csv")) as path:
        return read_summary(path)
