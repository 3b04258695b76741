"""The declared version range is the tested one: constraints-min.txt pins exactly the lower bounds that
pyproject.toml declares, and CI (.ci/run) installs it and runs the files in tests/minimum_versions.txt."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lower_bounds() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    bounds = {}
    for requirement in requirements:
        name, lowest = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement).groups()
        bounds[name.lower()] = lowest
    return bounds


def _pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {name.lower(): version for name, version in (line.split("==") for line in lines if line)}


def test_constraints_min_pins_every_declared_lower_bound():
    bounds = _lower_bounds()
    assert {"torch", "torchvision", "timm", "pytest"} <= set(bounds)
    assert _pins(ROOT / "constraints-min.txt") == bounds


def test_the_minimum_versions_run_names_existing_test_files_and_ci_runs_it():
    files = (ROOT / "tests" / "minimum_versions.txt").read_text().split()
    assert files and all((ROOT / f).is_file() for f in files)
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[test]" -c constraints-min.txt' in ci and "tests/minimum_versions.txt" in ci
