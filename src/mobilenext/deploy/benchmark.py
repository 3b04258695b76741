"""``mobilenext benchmark``: MobileNeXt against MobileNetV2 on the runtimes people deploy with.

Every (model, runtime) pair is built first (exported files are checked against PyTorch like any export),
then all pairs are timed *interleaved* in one process: each round calls every runner once, in a shuffled
order, so drift in the machine's speed (other jobs, thermal state) hits all of them alike. The table gives
medians and ratios to the baseline on the same runtime, with the same threads and the same input.

Peak memory is approximate: the growth of the process's resident set from before a runner is loaded
(exports are written earlier) to its high-water mark (``VmHWM``) over one batch, after warm-up; read from
``/proc`` (Linux only; blank elsewhere). It counts weights, the runtime's buffers and activations.
"""

from __future__ import annotations

import gc
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .._io import atomic_path, check_output_file
from .._plot import pyplot, save_png
from ..errors import ConfigError, UnknownModelError
from ..models.factory import create_model
from ..tables import format_table
from .export import EXPORT_FORMATS, export_model
from .runtimes import OnnxRunner, RuntimeRunner, TorchRunner, open_runner
from .samples import sample_images

__all__ = [
    "RUNTIMES",
    "TUNING_VARIABLES",
    "DEFAULT_MODELS",
    "BenchmarkReport",
    "benchmark",
    "build_model",
    "interleaved_times",
    "profile_onnx",
    "top1_of",
]

# Runtimes that run an exported file: (export format, int8).
FILE_RUNTIMES = {
    "onnxruntime": ("onnx", False),
    "tflite": ("tflite", False),
    "tflite-int8": ("tflite", True),
    "executorch": ("pte", False),
    "executorch-int8": ("pte", True),
}
RUNTIMES = ("eager", "compiled", *FILE_RUNTIMES)
DEFAULT_RUNTIMES = ("eager", "compiled", "onnxruntime", "tflite", "executorch")
DEFAULT_MODELS = ("mobilenext_100", "mobilenext_100_half_id", "mobilenetv2_100")
DEFAULT_BASELINE = "mobilenetv2_100"
# Process settings that change PyTorch's CPU numbers by up to 2x (README: "CPU memory allocator", "Compiled
# PyTorch"); the report names those that were set, so that a table says what it was measured with.
TUNING_VARIABLES = ("TORCHINDUCTOR_FREEZING", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD")
AUTHORS = "authors:"  # prefix: the authors' forward (in-place slice add), e.g. authors:mobilenext_100_half_id


def build_model(spec: str) -> nn.Module:
    """A registered model name, or ``authors:mobilenext_WWW[_half_id]`` for the authors' module and forward."""
    from ..models.official_model import OfficialMobileNeXt

    if spec.startswith(AUTHORS):
        match = re.fullmatch(r"mobilenext_(\d{3})(_half_id)?", spec[len(AUTHORS) :])
        if match is None:
            raise UnknownModelError(f"{spec!r}: the authors' forward exists for mobilenext_WWW[_half_id] only.")
        width, half = int(match[1]) / 100, bool(match[2])
        return OfficialMobileNeXt(width_mult=width, identity_multiplier=0.5 if half else 1.0).eval()
    return create_model(spec).eval()


def top1_of(spec: str) -> float | None:
    """ImageNet top-1 (%) the paper (or the authors' runs, or the MobileNetV2 paper) reports for a model."""
    from ..models.baselines import BASELINE_FIGURES
    from ..models.mobilenext import AUTHORS_TOP1, PAPER_FIGURES

    name = spec.removeprefix(AUTHORS)
    figures = {**BASELINE_FIGURES, **PAPER_FIGURES}
    return figures[name]["top1"] if name in figures else AUTHORS_TOP1.get(name)


def _proc_status_mb(field_name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Make ``VmHWM`` start again from the current resident set (Linux ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class _Entry:
    model: str
    runtime: str
    runner: RuntimeRunner
    peak_mb: float | None = None
    latencies: list[float] = field(default_factory=list)  # batch 1, seconds
    batch_times: list[float] = field(default_factory=list)  # batch N, seconds


def _runner_factory(
    spec: str, runtime: str, workdir: Path, img_size: int, threads: int, images: torch.Tensor
) -> Callable[[], RuntimeRunner]:
    """What builds the runner; exports happen here, before memory is measured, and are checked."""
    if runtime in ("eager", "compiled"):
        return lambda: TorchRunner(build_model(spec), compiled=runtime == "compiled", threads=threads)
    fmt, int8 = FILE_RUNTIMES[runtime]
    name = re.sub(r"[^\w.-]", "_", spec)
    path = workdir / f"{name}-{runtime}{EXPORT_FORMATS[fmt]}"
    export_model(
        build_model(spec),
        path,
        img_size=img_size,
        int8=int8,
        calibration=images if int8 else None,
        verify=images[:4],
        threads=threads,
    )
    return lambda: open_runner(path, threads=threads)


def _build_entry(spec: str, runtime: str, make_runner: Callable[[], RuntimeRunner], batch: np.ndarray) -> _Entry:
    """Build and warm up a runner (for torch.compile: compile), reading its memory on the way."""
    gc.collect()
    before = _proc_status_mb("VmRSS")
    runner = make_runner()
    runner(batch[:1])
    runner(batch)
    peak = None
    if before is not None and _reset_peak_rss():
        runner(batch)
        peak = _proc_status_mb("VmHWM") - before
    return _Entry(spec, runtime, runner, peak)


def _time_call(runner: RuntimeRunner, x: np.ndarray) -> float:
    start = time.perf_counter()
    runner(x)
    return time.perf_counter() - start


def interleaved_times(
    runners: Sequence[RuntimeRunner], x: np.ndarray, rounds: int, warmup: int = 5, bar: tqdm | None = None
) -> list[list[float]]:
    """Seconds per call of each runner on ``x``: every round calls all runners once, in a fresh shuffled
    order, and the first ``warmup`` rounds are not kept. One list per runner, in the order given."""
    times: list[list[float]] = [[] for _ in runners]
    order = list(range(len(runners)))
    shuffle = random.Random(0).shuffle
    for round_index in range(warmup + rounds):
        shuffle(order)
        for i in order:
            seconds = _time_call(runners[i], x)
            if round_index >= warmup:
                times[i].append(seconds)
            if bar is not None:
                bar.update()
    return times


@dataclass
class BenchmarkReport:
    rows: list[dict[str, Any]]
    settings: dict[str, Any]

    def table(self, fmt: str = "table") -> str:
        return format_table(self.rows, fmt)

    @property
    def settings_line(self) -> str:
        return "Settings: " + ", ".join(f"{k} {v}" for k, v in self.settings.items()) + "."

    FILES = ("benchmark.csv", "benchmark.md", "benchmark.png")

    @classmethod
    def check_outputs(cls, folder: str | Path, overwrite: bool = False) -> None:
        """Fail now, not after the benchmark, if :meth:`save` could not write into ``folder``."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"-o {folder} is a file; give a folder for {', '.join(cls.FILES)}.")
        if folder.is_dir():
            for name in cls.FILES:
                check_output_file(folder / name, overwrite)

    def save(self, folder: str | Path, overwrite: bool = True) -> list[Path]:
        """``benchmark.csv``, ``benchmark.md`` (settings + table) and ``benchmark.png`` in ``folder``."""
        self.check_outputs(folder, overwrite)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in (
            ("benchmark.csv", self.table("csv")),
            ("benchmark.md", f"{self.settings_line}\n\n{self.table('markdown')}"),
        ):
            with atomic_path(folder / name, overwrite=overwrite) as tmp:
                tmp.write_text(text)
            written.append(folder / name)
        written.append(self.plot(folder / "benchmark.png", overwrite))
        return written

    def plot(self, output: Path, overwrite: bool = True) -> Path:
        """Paper top-1 against measured batch-1 latency: one panel per runtime, one colour per model.

        Variants of one model share a published top-1, so the points sit on one line; a legend names them
        rather than labels that would overlap."""
        plt = pyplot()
        runtimes = list(dict.fromkeys(row["runtime"] for row in self.rows))
        models = list(dict.fromkeys(row["model"] for row in self.rows))
        markers = "osD^v<>p*h"
        fig, axes = plt.subplots(1, len(runtimes), figsize=(3.8 * len(runtimes), 3.8), squeeze=False)
        for ax, runtime in zip(axes[0], runtimes):
            for index, model in enumerate(models):
                row = next((r for r in self.rows if r["runtime"] == runtime and r["model"] == model), None)
                if row is not None and row["top1_paper"] is not None:
                    ax.scatter(
                        row["p50_ms"],
                        row["top1_paper"],
                        s=45,
                        color=f"C{index % 10}",
                        marker=markers[index % len(markers)],
                        label=model,
                        alpha=0.85,
                    )
            ax.set(title=runtime, xlabel="batch-1 latency p50 (ms)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("ImageNet top-1 (%, published)")
        axes[0][0].legend(fontsize=7, loc="center right")  # the baseline sits low, MobileNeXt high: room there
        fig.suptitle(f"{self.settings.get('input')} px, {self.settings.get('threads')} thread(s)", fontsize=9)
        return save_png(fig, output, overwrite=overwrite)


def _rows(entries: list[_Entry], batch_size: int, baseline: str) -> list[dict[str, Any]]:
    rows = []
    for entry in entries:
        p50, p90 = (float(np.percentile(entry.latencies, q)) * 1000 for q in (50, 90))
        throughput = batch_size / float(np.median(entry.batch_times)) if entry.batch_times else None
        rows.append(
            {
                "model": entry.model,
                "runtime": entry.runtime,
                "p50_ms": p50,
                "p90_ms": p90,
                f"img_s_b{batch_size}": throughput,
                "peak_mb": entry.peak_mb,
                "top1_paper": top1_of(entry.model),
            }
        )
    for row in rows:
        base = next((r for r in rows if r["model"] == baseline and r["runtime"] == row["runtime"]), None)
        row[f"p50_vs_{baseline}"] = row["p50_ms"] / base["p50_ms"] if base else None
        key = f"img_s_b{batch_size}"
        row[f"img_s_vs_{baseline}"] = row[key] / base[key] if base and row[key] and base[key] else None
    return rows


def benchmark(
    models: Sequence[str] = DEFAULT_MODELS,
    runtimes: Sequence[str] = DEFAULT_RUNTIMES,
    img_size: int = 224,
    threads: int = 1,
    rounds: int = 50,
    batch_size: int = 32,
    batch_rounds: int = 5,
    warmup: int = 5,
    baseline: str | None = None,
    calibration_images: int = 64,
    workdir: str | Path | None = None,
    progress: bool = True,
) -> BenchmarkReport:
    """Build every (model, runtime) pair, then time them interleaved; see the module docstring."""
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ConfigError(f"unknown runtime {unknown[0]!r}; choose from {', '.join(RUNTIMES)}.")
    if rounds < 1 or batch_size < 1:
        raise ConfigError("rounds and batch size must be at least 1.")
    if baseline is None:
        baseline = DEFAULT_BASELINE  # its ratio columns stay empty when it is not timed
    elif baseline not in models:  # the ratios divide by it: say so before minutes of exports
        raise ConfigError(f"--baseline {baseline} is not among the models timed ({', '.join(models)}); add it.")
    built = {spec: build_model(spec) for spec in dict.fromkeys(models)}  # every name checked before any export
    torch.set_num_threads(threads)
    images = sample_images(built[models[0]], None, split="train", count=calibration_images, img_size=img_size)[0]
    batch = np.ascontiguousarray(images[:1].expand(batch_size, -1, -1, -1).numpy())
    with tempfile.TemporaryDirectory(prefix="mobilenext-bench-", dir=workdir) as tmp:
        pairs = [(m, r) for m in models for r in runtimes]
        factories = [
            _runner_factory(spec, runtime, Path(tmp), img_size, threads, images)
            for spec, runtime in tqdm(pairs, desc="export", disable=not progress, leave=False)
        ]
        entries = [
            _build_entry(spec, runtime, factory, batch)
            for (spec, runtime), factory in tqdm(
                list(zip(pairs, factories)), desc="build, warm up", disable=not progress, leave=False
            )
        ]
        total = (warmup + rounds + warmup + batch_rounds) * len(entries)
        with tqdm(total=total, desc="interleaved timing", unit="call", disable=not progress, leave=False) as bar:
            runners = [entry.runner for entry in entries]
            latencies = interleaved_times(runners, batch[:1], rounds, warmup, bar)
            batch_times = interleaved_times(runners, batch, batch_rounds, warmup, bar)
    for entry, latency, batch_time in zip(entries, latencies, batch_times):
        entry.latencies, entry.batch_times = latency, batch_time
    settings = {
        "input": img_size,
        "threads": threads,
        "batch-1 rounds": rounds,
        f"batch-{batch_size} rounds": batch_rounds,
        "torch": torch.__version__,
        "tuning": " ".join(f"{name}={os.environ[name]}" for name in TUNING_VARIABLES if os.environ.get(name)) or "none",
    }
    return BenchmarkReport(_rows(entries, batch_size, baseline), settings)


def _op_kind(args: dict[str, Any]) -> str:
    """The op type, with convolutions told apart by their weight shape: depthwise and 1x1 convs are the two
    halves of every mobile block and cost very differently (memory-bound versus compute-bound)."""
    op = args.get("op_name", "?")
    shapes = [next(iter(shape.values())) for shape in args.get("input_type_shape", [])]
    if op not in ("Conv", "FusedConv") or len(shapes) < 2 or len(shapes[1]) != 4:
        return op
    out_chs, in_per_group, kh, kw = shapes[1]
    if in_per_group == 1 and out_chs == shapes[0][1]:
        return f"{op} depthwise {kh}x{kw}"
    return f"{op} {kh}x{kw}" + (" grouped" if in_per_group != shapes[0][1] else "")


def profile_onnx(
    model: str, img_size: int = 224, threads: int = 1, runs: int = 50, workdir: str | Path | None = None
) -> list[dict[str, Any]]:
    """Where onnxruntime spends a batch-1 forward: kernel time per op type (convolutions by kind), largest first."""
    import json

    x = torch.randn(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(prefix="mobilenext-profile-", dir=workdir) as tmp:
        path = Path(tmp) / "model.onnx"
        export_model(build_model(model), path, img_size=img_size, verify=x)
        runner = OnnxRunner(path, threads=threads, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(runs):
            runner(x.numpy())
        events = json.loads(Path(runner.session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = _op_kind(event["args"])
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1000
            counts[op] = counts.get(op, 0) + 1
    grand = sum(totals.values()) or 1.0
    return [
        {"op": op, "ms_per_run": ms / runs, "share": ms / grand, "nodes": counts[op] // runs}
        for op, ms in sorted(totals.items(), key=lambda item: -item[1])
    ]
