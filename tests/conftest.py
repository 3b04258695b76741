"""Shared fixtures: the authors' reference data (../shared/reference beside the repository)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import pytest
import torch

import mobilenext  # noqa: F401  (registers the models)

# Under pytest-xdist (`-n`), the workers share the cores: each gets its part, so they do not oversubscribe.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    torch.set_num_threads(max(1, torch.get_num_threads() // workers))

REFERENCE_DIR = Path(
    os.environ.get("MOBILENEXT_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference")
)

# model name -> suffix of the authors' reference file and width multiplier
WIDTHS = {
    "mobilenext_140": ("14", 1.4),
    "mobilenext_100": ("10", 1.0),
    "mobilenext_075": ("075", 0.75),
    "mobilenext_050": ("05", 0.5),
    "mobilenext_035": ("035", 0.35),
}


def reference_path(name: str) -> Path:
    path = REFERENCE_DIR / name
    if not path.exists():
        pytest.skip(f"reference data {path} not found (set MOBILENEXT_REFERENCE)")
    return path


def reference_shapes(model_name: str) -> dict[str, list[int]]:
    """Key -> shape of the authors' state_dict, parsed from the reference file, in file order."""
    suffix, _ = WIDTHS[model_name]
    shapes = {}
    for line in reference_path(f"official_mobilenext_w{suffix}_state_dict_shapes.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        shapes[key] = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
    return shapes


def reference_params_madds() -> dict[float, dict[str, str]]:
    with reference_path("mobilenext_params_madds.csv").open() as f:
        return {float(row["width"]): row for row in csv.DictReader(f)}


def random_official_state_dict(model_name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """An authors'-layout state_dict built from the reference shapes, with random but valid values."""
    g = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape in reference_shapes(model_name).items():
        if key.endswith("num_batches_tracked"):
            state_dict[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state_dict[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state_dict[key] = torch.randn(shape, generator=g) * 0.1
    return state_dict


# A small, quick recipe on the digits (a few seconds per epoch on 2 cores).
QUICK = [
    "--model",
    "mobilenext_035",
    "--img-size",
    "32",
    "-b",
    "32",
    "--lr",
    "0.01",
    "--warmup-epochs",
    "0",
    "--smoothing",
    "0",
]


DIGITS_EPOCHS = 12


@pytest.fixture(autouse=True)
def _restore_the_package_logger():
    """``mobilenext.cli.main`` configures the package logger for the process (its own handler, no propagation),
    as a program should; a test calling it must not leave that to the next test, whose ``caplog`` (on the
    root logger) would then see nothing. Which tests share a process depends on pytest-xdist's schedule."""
    logger = logging.getLogger("mobilenext")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> tuple[Path, dict]:
    """A MobileNeXt-0.35 trained with the digits recipe at 32 px for 12 epochs (about 95% top-1 in 35 s), shared
    by every test that needs a real checkpoint: int8 and prediction must keep real decisions, not random ones."""
    from mobilenext.classification.config import parse_train_args
    from mobilenext.classification.train import train

    run = tmp_path_factory.mktemp("digits") / "run"
    args = [
        "--config",
        "digits",
        "--model",
        "mobilenext_035",
        "--img-size",
        "32",
        "--epochs",
        str(DIGITS_EPOCHS),
        "--output",
        str(run),
    ]
    return run, train(parse_train_args(args))


@pytest.fixture
def image_batch() -> torch.Tensor:
    return torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
