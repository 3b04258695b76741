"""Render lists of row dicts as an aligned text table, Markdown or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

__all__ = ["format_table", "TABLE_FORMATS"]

TABLE_FORMATS = ("table", "markdown", "csv")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], fmt: str = "table") -> str:
    """Format ``rows`` (dicts with the same keys) as ``table``, ``markdown`` or ``csv`` (raw values)."""
    if not rows:
        return ""
    columns = list(rows[0])
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str], sep: str) -> str:
        padded = [v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return sep.join(padded)

    if fmt == "markdown":
        rule = ["-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
        body = [line(columns, " | "), line(rule, " | ")] + [line(r, " | ") for r in cells]
        return "\n".join(f"| {b} |" for b in body) + "\n"
    if fmt == "table":
        body = [line(columns, "  "), line(["-" * w for w in widths], "  ")] + [line(r, "  ") for r in cells]
        return "\n".join(body) + "\n"
    raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(TABLE_FORMATS)}.")
