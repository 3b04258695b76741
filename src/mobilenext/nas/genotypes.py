"""Genotypes: the discrete cells a search ends with, in DARTS's own format, and how to save, load and check them.

A cell has two inputs (node 0 is the output of the cell before the previous one, node 1 of the previous
one) and ``steps`` intermediate nodes. Each intermediate node sums two operations, each applied to an
earlier node; the cell's output concatenates the nodes listed in ``*_concat``. So ``normal`` is a flat list
of ``(operation, input node)`` pairs, two per intermediate node::

    Genotype(normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[("max_pool_3x3", 0), ...], reduce_concat=[2, 3, 4, 5])

Genotypes are read from a built-in name (``DARTS_V2``), a JSON file, or the ``Genotype(...)`` text that
DARTS logs print. Every reader checks operations and wiring and says in one sentence what is wrong.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .._io import atomic_path
from ..errors import ConfigError
from .operations import check_op_name

__all__ = [
    "Genotype",
    "GENOTYPES",
    "DARTS_V1",
    "DARTS_V2",
    "check_genotype",
    "derive_genotype",
    "genotype_from_dict",
    "load_genotype",
    "save_genotype",
]

Edge = tuple[str, int]


class Genotype(NamedTuple):
    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "normal": [list(edge) for edge in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(edge) for edge in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def __str__(self) -> str:  # DARTS's notation, which its scripts and papers paste around
        def edges(cell):
            return "[" + ", ".join(f"('{op}', {node})" for op, node in cell) + "]"

        return (
            f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )


def check_genotype(genotype: Genotype | Sequence, source: str = "genotype") -> Genotype:
    """Normalise to tuples and check it: known operations, two edges per node, inputs that precede the node,
    concatenated nodes that exist. ``source`` names where it came from in the error."""
    if len(genotype) != 4:
        raise ConfigError(f"{source}: a genotype has 4 parts (normal, normal_concat, reduce, reduce_concat).")
    parts = []
    for cell, concat, kind in ((genotype[0], genotype[1], "normal"), (genotype[2], genotype[3], "reduce")):
        edges = _check_edges(cell, f"{source}: {kind} cell")
        nodes = len(edges) // 2 + 2
        try:
            concat = tuple(int(n) for n in concat if float(n).is_integer())
        except (TypeError, ValueError):
            concat = ()
        if not concat or any(not 0 <= n < nodes for n in concat) or len(set(concat)) != len(concat):
            raise ConfigError(
                f"{source}: {kind}_concat must list distinct nodes among 0..{nodes - 1}, got "
                f"{genotype[1] if kind == 'normal' else genotype[3]!r}."
            )
        parts += [edges, concat]
    return Genotype(*parts)


def _check_edges(cell: Any, where: str) -> tuple[Edge, ...]:
    if not isinstance(cell, (list, tuple)) or not cell or len(cell) % 2:
        raise ConfigError(f"{where}: expected a non-empty list of (operation, input node) pairs, two per node.")
    edges = []
    for index, edge in enumerate(cell):
        if (
            not isinstance(edge, (list, tuple))
            or len(edge) != 2
            or not isinstance(edge[1], int)
            or isinstance(edge[1], bool)
        ):
            raise ConfigError(f"{where}: edge {index} is {edge!r}, not an (operation, input node) pair.")
        op, node = check_op_name(edge[0], where), edge[1]
        if not 0 <= node < index // 2 + 2:
            raise ConfigError(
                f"{where}: edge {index} ({op}) reads node {node}, but intermediate node "
                f"{index // 2 + 2} can only read nodes 0..{index // 2 + 1}."
            )
        edges.append((op, node))
    return tuple(edges)


def genotype_from_dict(raw: Any, source: str = "genotype") -> Genotype:
    keys = Genotype._fields
    if not isinstance(raw, dict) or any(k not in raw for k in keys):
        raise ConfigError(f"{source}: expected a JSON object with keys {', '.join(keys)}.")
    return check_genotype([raw[k] for k in keys], source)


def _parse_darts_text(text: str) -> Genotype:
    """``Genotype(normal=[...], normal_concat=..., ...)`` as DARTS prints it, read without ``eval``."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Genotype" and not call.args):
            raise ValueError
        values = {kw.arg: kw.value for kw in call.keywords}
        for key in ("normal_concat", "reduce_concat"):  # DARTS writes range(2, 6)
            node = values.get(key)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range":
                values[key] = ast.List([ast.Constant(n) for n in range(*[ast.literal_eval(a) for a in node.args])])
        raw = {k: ast.literal_eval(v) for k, v in values.items()}
    except (SyntaxError, ValueError, TypeError):
        raise ConfigError(
            "the genotype text is not of the form Genotype(normal=[...], normal_concat=[...], "
            "reduce=[...], reduce_concat=[...])."
        ) from None
    return genotype_from_dict(raw, "genotype text")


def load_genotype(spec: str | Path | Genotype | dict) -> Genotype:
    """A genotype from a built-in name (``DARTS_V2``), a JSON file (as :func:`save_genotype` writes it, or
    the bare genotype object), DARTS's ``Genotype(...)`` text, or a dict of the JSON's content."""
    if isinstance(spec, Genotype):
        return check_genotype(spec)
    if isinstance(spec, dict):  # as stored in checkpoints and JSON files
        return genotype_from_dict(spec.get("genotype", spec))
    text = str(spec)
    if text.upper() in GENOTYPES:
        return GENOTYPES[text.upper()]
    if text.lstrip().startswith("Genotype("):
        return _parse_darts_text(text)
    path = Path(text)
    if not path.is_file():
        raise ConfigError(
            f"genotype {text!r} is neither a built-in ({', '.join(GENOTYPES)}) nor an existing JSON file."
        )
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"genotype file {path} is not valid JSON ({e}).") from None
    if isinstance(raw, dict) and "genotype" in raw:
        raw = raw["genotype"]
    return genotype_from_dict(raw, f"genotype file {path}")


def save_genotype(genotype: Genotype, path: str | Path, **extra: Any) -> Path:
    """Write ``{"genotype": {...}, **extra}`` atomically; ``extra`` holds e.g. the search's settings and alphas."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"genotype": check_genotype(genotype).to_dict(), **extra}, indent=1))
    return path


def derive_genotype(
    weights_normal: torch.Tensor, weights_reduce: torch.Tensor, ops: Sequence[str], steps: int = 4
) -> Genotype:
    """The DARTS rule: each intermediate node keeps its two strongest inputs, an input's strength being its
    largest softmax weight over the operations other than ``none``, and on each kept edge that operation.

    ``weights_*`` are ``[edges, len(ops)]`` softmax weights, edges ordered node by node (2, 3, 4, ... inputs).
    """
    ops = list(ops)
    allowed = torch.tensor([op != "none" for op in ops])

    def cell(weights: torch.Tensor) -> tuple[Edge, ...]:
        weights = weights.detach().float().cpu().masked_fill(~allowed, -1.0)
        edges, start = [], 0
        for node in range(steps):
            inputs = weights[start : start + node + 2]
            strongest = sorted(range(node + 2), key=lambda j: -inputs[j].max().item())[:2]
            edges += [(ops[int(inputs[j].argmax())], j) for j in sorted(strongest)]
            start += node + 2
        return tuple(edges)

    concat = tuple(range(2, steps + 2))
    return Genotype(cell(weights_normal), concat, cell(weights_reduce), concat)


_CONCAT = (2, 3, 4, 5)
# The two cells published with DARTS (Liu, Simonyan, Yang, ICLR 2019): first- and second-order search.
DARTS_V1 = Genotype(
    normal=(("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)),
    normal_concat=_CONCAT,
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)),
    reduce_concat=_CONCAT,
)  # fmt: skip
DARTS_V2 = Genotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    normal_concat=_CONCAT,
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
    reduce_concat=_CONCAT,
)  # fmt: skip
GENOTYPES: dict[str, Genotype] = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "DARTS": DARTS_V2}
