"""Progress reporting: a tqdm bar on a terminal, a log line every ``interval`` steps otherwise (CI logs, files)."""

from __future__ import annotations

import logging
import sys
import time

import torch
from tqdm import tqdm

__all__ = ["Progress"]

log = logging.getLogger("mobilenext")

_BAR_REFRESH = 10  # steps between postfix updates of the terminal bar


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class Progress:
    """Counts steps and images of one loop; ``update`` takes the numbers to show beside ETA and img/s."""

    def __init__(self, total: int, desc: str, enabled: bool = True, interval: int = 50):
        self.total, self.desc, self.interval = total, desc, max(1, interval)
        self.enabled = enabled
        self.bar = (
            tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)
            if enabled and sys.stderr.isatty()
            else None
        )
        self.steps = self.images = 0
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.elapsed, 1e-9)

    def update(self, images: int, **shown: float | torch.Tensor) -> None:
        """Count one step; ``shown`` values (tensors allowed) are read only when printed, so a GPU syncs rarely."""
        self.steps += 1
        self.images += images
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if self.steps % _BAR_REFRESH == 0:
                text = {k: f"{float(v):.4g}" for k, v in shown.items()}
                self.bar.set_postfix(**text, img_s=f"{self.images_per_second:.0f}")
        elif self.steps % self.interval == 0 and self.steps < self.total:  # the epoch line reports the end
            eta = self.elapsed / self.steps * (self.total - self.steps)
            values = "  ".join(f"{k} {float(v):.4g}" for k, v in shown.items())
            log.info(
                f"{self.desc} {self.steps}/{self.total}  {values}  {self.images_per_second:.0f} img/s  "
                f"eta {_duration(eta)}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
