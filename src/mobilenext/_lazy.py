"""Package namespaces that import a name's module on first use (PEP 562), so that ``import mobilenext`` stays
light: a task's package lists what it offers without loading it until asked."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps a public name to the submodule that
    defines it (``{"export_model": "export"}``); the submodule is imported when the name is first read.

    A name may not be that of a submodule (``deploy.fuse`` and its ``fuse``): once the submodule is imported,
    Python binds the name to it and this hook is never asked; such a name is imported eagerly instead."""
    clashes = sorted(set(exports) & set(exports.values()))
    if clashes:
        raise ValueError(f"{package}: {', '.join(clashes)} name submodules too; import them eagerly.")

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)  # the next read is an ordinary attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
