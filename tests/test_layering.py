"""Layers point down: no module below the CLI imports the package root, models do not import NAS or the
engine, and one loader restores classifiers and detectors alike."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mobilenext import CheckpointError
from mobilenext.detection.model import create_detector
from mobilenext.models import create_model
from mobilenext.models.checkpoint import restore_model

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mobilenext"
ABOVE_THE_LAYERS = {"__init__.py", "cli.py", "__main__.py"}  # of the package root itself


def _is_submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def _root_imports(path: Path) -> list[str]:
    """``file:line`` of each import of the package root's own names in ``path``. Importing a submodule through
    the root (``from .. import checks``) takes nothing from the root's namespace, so it passes."""
    package = ["mobilenext", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            hit = any(alias.name == "mobilenext" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level <= len(package) else []
                target = [*base, *(node.module.split(".") if node.module else [])]
            else:
                target = node.module.split(".")
            hit = target in ([], ["mobilenext"]) and not all(_is_submodule(a.name) for a in node.names)
        else:
            continue
        if hit:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_module_below_the_cli_imports_the_package_root():
    modules = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).as_posix() not in ABOVE_THE_LAYERS]
    assert len(modules) > 20
    offenders = [hit for path in sorted(modules) for hit in _root_imports(path)]
    assert not offenders, f"these import the package root (import from its submodules instead): {offenders}"


def test_the_factory_builds_darts_cifar_without_importing_search_or_training():
    code = (
        "import sys\n"
        "import mobilenext.models.factory\n"
        "loaded = [m for m in ('mobilenext.nas.search', 'mobilenext.engine.train') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "from mobilenext.models.factory import create_model\n"
        "assert type(create_model('darts_cifar')).__name__ == 'NetworkCIFAR'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message.endswith(".") and ". " not in message and "\n" not in message, message
    return message


def test_restore_model_restores_detectors_and_refuses_the_other_task(tmp_path):
    from mobilenext.engine.checkpoint import save_checkpoint  # here: the scans above need no engine

    torch.manual_seed(0)
    detector = create_detector("ssdlite_mobilenext_035", num_classes=3, size=96).eval()
    det_path = tmp_path / "det.pth"  # as `detect train` saves it
    save_checkpoint(
        {
            "task": "detection",
            "model": "ssdlite_mobilenext_035",
            "classes": ["a", "b"],
            "size": 96,
            "args": {"lr": 0.1},
            "state_dict": detector.state_dict(),
        },
        det_path,
    )

    restored, record = restore_model(det_path, task="detection")
    assert not restored.training
    assert (record["task"], record["model"], record["classes"], record["size"], record["args"]) == (
        "detection",
        "ssdlite_mobilenext_035",
        ["a", "b"],
        96,
        {"lr": 0.1},
    )
    images = [torch.rand(3, 96, 96)]
    with torch.no_grad():
        for got, want in zip(restored(images), detector(images), strict=True):
            for key in ("boxes", "scores", "labels"):
                torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    assert type(restore_model(det_path, task=None)[0]) is type(restored)  # None: the checkpoint's own task

    with pytest.raises(CheckpointError) as error:
        restore_model(det_path)  # classification by default: predict, validate, export
    assert "is a detector" in _one_sentence(error)

    cls_path = tmp_path / "cls.pth"
    save_checkpoint(
        {
            "task": "classification",
            "model": "mobilenext_035",
            "args": {"model": "mobilenext_035"},
            "state_dict": create_model("mobilenext_035", num_classes=2).state_dict(),
        },
        cls_path,
    )
    with pytest.raises(CheckpointError) as error:
        restore_model(cls_path, task="detection")
    assert "is a classification checkpoint" in _one_sentence(error)
    classifier, record = restore_model(cls_path)
    assert record["model"] == "mobilenext_035" and classifier.num_classes == 2
