"""matplotlib without a screen, and PNGs written atomically."""

from __future__ import annotations

from pathlib import Path

from ._io import atomic_path
from .errors import require

__all__ = ["pyplot", "save_png"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or an error naming the extra that installs it."""
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, output: Path, overwrite: bool = True) -> Path:
    fig.tight_layout()
    with atomic_path(output, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    pyplot().close(fig)
    return output
