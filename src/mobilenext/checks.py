"""Value checks shared by command-line flags and YAML config keys: parse, check, or say what is wrong.

Each check is a callable that argparse uses as a flag's ``type`` (so a bad flag stops the command with one
sentence and exit code 2 before any work starts) and that the config reader applies to YAML values (which
arrive already typed). A check raises ``argparse.ArgumentTypeError`` with a sentence that names the value and
what would have been accepted; callers add which flag or key it was.
"""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = [
    "Number",
    "Choice",
    "device",
    "optimizer_names",
    "COUNT",
    "NONNEG_INT",
    "OPTIMIZER",
    "SCHEDULER",
    "INTERPOLATION",
]

# timm's create_scheduler_v2 names and timm's transforms' interpolation names (str_to_interp_mode + "random").
SCHEDULERS = ("cosine", "tanh", "step", "multistep", "plateau", "poly")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "box", "hamming", "lanczos", "random")


class Number:
    """An int or a finite float within bounds: ``Number(int, low=1)``, ``Number(float, 0, 1, high_open=True)``."""

    def __init__(
        self,
        kind: type = float,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ):
        self.kind, self.low, self.high, self.low_open, self.high_open = kind, low, high, low_open, high_open
        self.__name__ = kind.__name__  # argparse names the type in its own messages

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{noun} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {self.high:g}"
        return f"a finite {'integer' if self.kind is int else 'number'}"

    def __call__(self, value: Any) -> int | float:
        try:
            if isinstance(value, bool):  # YAML's true/false are not numbers here
                raise ValueError
            number = float(value)
            if self.kind is int:
                if not number.is_integer():
                    raise ValueError
                number = int(value) if isinstance(value, int) else int(number)
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {value!r}") from None
        if not math.isfinite(number) or not self._in_range(number):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {value!r}")
        return number

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return not (self.high is not None and (x >= self.high if self.high_open else x > self.high))


class Choice:
    """One of a set of names (given, or computed on first use), with "did you mean" for a typo."""

    def __init__(
        self,
        names: Iterable[str] | Callable[[], Iterable[str]],
        what: str,
        accept: Callable[[str], bool] | None = None,  # names beyond the list that are fine (timm's lookahead_*)
    ):
        self._names, self.what, self.accept = names, what, accept
        self.__name__ = what

    @property
    def names(self) -> list[str]:
        return list(self._names() if callable(self._names) else self._names)

    def __call__(self, value: Any) -> str:
        text = str(value)
        names = self.names
        if text in names or (self.accept is not None and self.accept(text)):
            return text
        close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
        hint = (
            f"did you mean {' or '.join(close)}?"
            if close
            else f"choose from {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}."
        )
        raise argparse.ArgumentTypeError(f"unknown {self.what} {text!r}; {hint}")


def optimizer_names() -> list[str]:
    """timm's optimizer names (``timm.optim.list_optimizers``, timm >= 1.0.10) or a core list on older timm."""
    import timm.optim

    lister = getattr(timm.optim, "list_optimizers", None)
    return (
        list(lister())
        if lister
        else [
            "sgd",
            "momentum",
            "nesterov",
            "adam",
            "adamw",
            "rmsprop",
            "rmsproptf",
            "lamb",
            "lars",
            "adabelief",
            "adafactor",
            "lion",
            "nadam",
            "radam",
        ]
    )


def _timm_optimizer_variant(name: str) -> bool:
    """timm also takes ``lookahead_<name>``."""
    return name.startswith("lookahead_") and name.removeprefix("lookahead_") in optimizer_names()


COUNT = Number(int, low=1)  # batch sizes, intervals, top-k: at least one
# Upper bounds where a typo would exhaust the machine before any output: a 4096 px image already takes GBs of
# activations per image; a million epochs or a billion iterations is no run anyone means.
IMAGE_SIZE = Number(int, low=1, high=4096)
EPOCHS = Number(int, low=1, high=1_000_000)
ITERATIONS = Number(int, low=1, high=1_000_000_000)
BATCH = Number(int, low=1, high=65_536)
NONNEG_INT = Number(int, low=0)  # workers, warm-up epochs, "0: all"
OPTIMIZER = Choice(optimizer_names, "optimizer", accept=_timm_optimizer_variant)
SCHEDULER = Choice(SCHEDULERS, "scheduler")
INTERPOLATION = Choice(INTERPOLATIONS, "interpolation")


def device(value: Any) -> str:
    """A device this machine has: ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
    text = str(value).strip()
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cpu":
        return text
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available here; use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {count} CUDA device(s), cuda:0..{count - 1}")
        return text
    if parsed.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise argparse.ArgumentTypeError(f"{text}: no Apple MPS device is available here; use --device cpu")
        return text
    raise argparse.ArgumentTypeError(f"unsupported device {text!r}; use cpu, cuda, cuda:N or mps")
