"""Layers point down (DESIGN.md, "Layers of the package"): models, data and engine import no task, no inference
layer and not the package root; no task imports the inference layer; nothing imports in a circle; and
``import mobilenext`` registers every model without loading training, detection, NAS or deployment code.

The scan reads every import of every module: at module level, inside functions, through ``importlib`` (and
the package namespaces' lazy exports, which import on first use)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mobilenext"
LOWER = ("models", "data", "engine")  # know no task
TASKS = ("classification", "detection", "nas", "deploy")  # know no inference layer
ABOVE_TASKS = ("api", "cli", "__main__")
ROOT = "mobilenext"  # the package namespace itself (its __init__)


def _module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import in ``source`` (the code of ``module``), anywhere in it.
    ``from X import name`` counts as importing ``X.name`` where that is a module, else ``X``; an ``importlib``
    call whose module is not a string constant counts as ``"?"`` (unknown, so never allowed below)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.append((node.lineno, child if _exists(child) else target))
        elif isinstance(node, ast.Call):
            found += _dynamic_imports(node, package)
    return found


def _dynamic_imports(call: ast.Call, package: list[str]) -> list[tuple[int, str]]:
    """``importlib.import_module(...)`` / ``__import__(...)`` and ``lazy_exports(__name__, {name: module})``."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name in ("import_module", "__import__") and call.args:
        arg = call.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            text = arg.value
            if text.startswith("."):  # relative to the calling package
                level = len(text) - len(text.lstrip("."))
                text = ".".join([*package[: len(package) - level + 1], text.lstrip(".")])
            return [(call.lineno, text)]
        return [(call.lineno, "?")]
    if name == "lazy_exports" and len(call.args) == 2 and isinstance(call.args[1], ast.Dict):
        return [
            (call.lineno, ".".join([*package, v.value])) for v in call.args[1].values if isinstance(v, ast.Constant)
        ]
    return []


def _graph() -> dict[str, list[tuple[int, str]]]:
    """Every module of the package -> the modules of the package it imports."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        edges = imports_of(path.read_text(), module, is_package=path.name == "__init__.py")
        graph[module] = [(line, target) for line, target in edges if target == "?" or target.split(".")[0] == ROOT]
    return graph


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ROOT


def _offenders(graph, importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module}:{line} imports {target}"
        for module, edges in graph.items()
        if _layer(module) in importers
        for line, target in edges
        if target == "?" or target == ROOT or _layer(target) in forbidden
    ]


GRAPH = _graph()


def test_models_data_and_engine_import_no_task_no_inference_layer_and_not_the_root():
    assert {_layer(m) for m in GRAPH} >= {*LOWER, *TASKS, "api"}
    offenders = _offenders(GRAPH, LOWER, (*TASKS, *ABOVE_TASKS))
    assert not offenders, f"the lower layers must not import upwards: {offenders}"


def test_no_task_imports_the_inference_layer_the_cli_or_the_root():
    offenders = _offenders(GRAPH, TASKS, ABOVE_TASKS)
    assert not offenders, f"tasks must not import the inference layer: {offenders}"


def _cycle(graph: dict[str, list[tuple[int, str]]]) -> list[str] | None:
    """One import cycle of ``graph`` (module names, the first repeated at the end), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for _, target in graph.get(module, []):
            if target == module or target not in graph:
                continue
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in graph:
        if module not in state and (found := visit(module)):
            return found
    return None


def test_there_is_no_import_cycle():
    assert _cycle(GRAPH) is None, f"import cycle: {' -> '.join(_cycle(GRAPH))}"


@pytest.mark.parametrize(
    ("module", "source", "target"),
    [
        ("mobilenext.models.x", "from ..detection.model import ssdlite\n", "mobilenext.detection.model"),
        ("mobilenext.data.x", "def f():\n    from mobilenext.deploy import fuse\n", "mobilenext.deploy.fuse"),
        (
            "mobilenext.engine.x",
            "import importlib\nimportlib.import_module('..nas.network', __package__)\n",
            "mobilenext.nas.network",
        ),
        ("mobilenext.engine.x", "import importlib\nimportlib.import_module(NAME)\n", "?"),
        ("mobilenext.engine.x", "import importlib\nimportlib.import_module('mobilenext.nas')\n", "mobilenext.nas"),
        ("mobilenext.models.x", "from .. import __version__\n", "mobilenext"),
    ],
)
def test_the_scan_sees_imports_at_every_level(module, source, target):
    """The checks above would fail on these: module level, in a function, through importlib, the root."""
    edges = [t for _, t in imports_of(source, module)]
    assert target in edges
    graph = {module: [(1, t) for t in edges]}
    assert _offenders(graph, LOWER, (*TASKS, *ABOVE_TASKS))


def test_the_scan_finds_a_cycle():
    graph = {"mobilenext.a": [(1, "mobilenext.b")], "mobilenext.b": [(2, "mobilenext.a")], "mobilenext.c": []}
    assert _cycle(graph) == ["mobilenext.a", "mobilenext.b", "mobilenext.a"]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_mobilenext_registers_every_model_and_loads_no_task_code():
    loaded = _run(
        "import sys, timm, mobilenext\n"
        "assert 'darts_cifar' in mobilenext.list_models() and timm.is_model('mobilenext_100')\n"
        "print(' '.join(m for m in sys.modules if m.startswith(('mobilenext', 'onnx', 'matplotlib', 'executorch'))))\n"
    ).split()
    heavy = [
        m
        for m in loaded
        if not m.startswith("mobilenext")
        or _layer(m) in ("detection", "deploy", "cli")
        or m in ("mobilenext.nas.network", "mobilenext.nas.supernet", "mobilenext.nas.search")
        or m in ("mobilenext.classification.train", "mobilenext.engine.runner", "mobilenext.engine.config")
    ]
    assert not heavy, f"import mobilenext loaded {heavy}"


def test_darts_cifar_builds_without_importing_search_or_training():
    loaded = _run(
        "import sys\n"
        "from mobilenext.models.factory import create_model\n"
        "assert type(create_model('darts_cifar')).__name__ == 'NetworkCIFAR'\n"
        "print(' '.join(m for m in ('mobilenext.nas.search', 'mobilenext.classification.train') if m in sys.modules))\n"
    ).split()
    assert not loaded
