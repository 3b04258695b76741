"""One calling convention for every runtime: ``runner(batch) -> logits`` on float32 NCHW numpy arrays.

Exports are verified and benchmarked through these runners, so a number in a report always comes from
the runtime a phone or server would use: PyTorch (eager or ``torch.compile``), onnxruntime, the LiteRT
(TFLite) interpreter with XNNPACK, ExecuTorch with its XNNPACK delegate, or a ``torch.export`` program.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, require
from .fuse import fuse

__all__ = [
    "RuntimeRunner",
    "TorchRunner",
    "OnnxRunner",
    "TFLiteRunner",
    "ExecuTorchRunner",
    "ExportedProgramRunner",
    "open_runner",
]


class RuntimeRunner:
    """Base class: ``name`` says which runtime, ``__call__`` maps an NCHW float32 batch to logits."""

    name = "runner"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchRunner(RuntimeRunner):
    """The fused model in PyTorch, eager or compiled with ``torch.compile`` (inductor), channels-last."""

    def __init__(self, model: nn.Module, compiled: bool = False, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.model = fuse(model).to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model, dynamic=False) if compiled else self.model
        self.name = "torch-compiled" if compiled else "torch-eager"

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(memory_format=torch.channels_last)
        return self.forward(x).float().numpy()


class OnnxRunner(RuntimeRunner):
    """An ``.onnx`` file in onnxruntime's CPU provider with all graph optimisations."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, profile_prefix: str | None = None):
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


class TFLiteRunner(RuntimeRunner):
    """A ``.tflite`` file in the LiteRT interpreter (XNNPACK delegate on CPU).

    The file holds batch 1, the phone's case, and a batch is run one image after another: resizing the
    interpreter works for some graphs and not others (a channel slice keeps batch 1 in its sizes), and a
    throughput figure should not depend on which. int8 models take and give int8 tensors: the runner
    quantizes the input and dequantizes the logits with the scales in the file, so callers always pass and
    get float32.
    """

    name = "tflite"

    def __init__(self, path: str | Path, threads: int | None = None):
        litert = require("ai_edge_litert.interpreter", "tflite")
        self.interpreter = litert.Interpreter(model_path=str(path), num_threads=threads or None)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def _invoke(self, image: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(image, dtype=np.float32)
        if self.input["dtype"] != np.float32:
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero_point = self.output["quantization"]
            y = (y.astype(np.float32) - zero_point) * scale
        return y

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self._invoke(image[None]) for image in batch])


class ExecuTorchRunner(RuntimeRunner):
    """A ``.pte`` program in ExecuTorch's Python runtime, which runs the same C++ runtime and XNNPACK delegate
    as the phone libraries.

    Like a TFLite file it holds batch 1 and a batch runs image by image. ExecuTorch has one thread pool per
    process; ``threads`` resizes it (its only handle from Python is the underscored
    ``_unsafe_reset_threadpool``: safe here because no method of this runner is running while it resets).
    """

    name = "executorch"

    def __init__(self, path: str | Path, threads: int | None = None):
        runtime = require("executorch.runtime", "executorch")
        if threads:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(threads)
        self.method = runtime.Runtime.get().load_program(Path(path)).load_method("forward")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        return torch.cat([self.method.execute([image])[0] for image in images.split(1)]).numpy()


class ExportedProgramRunner(RuntimeRunner):
    """A ``torch.export`` program (``.pt2``) loaded back with ``torch.export.load``."""

    name = "torch.export"

    def __init__(self, path: str | Path, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.module = torch.export.load(str(path)).module()

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()


_FILE_RUNNERS = {".onnx": OnnxRunner, ".tflite": TFLiteRunner, ".pte": ExecuTorchRunner, ".pt2": ExportedProgramRunner}


def open_runner(path: str | Path, threads: int | None = None) -> RuntimeRunner:
    """The runner for an exported file, chosen by its suffix."""
    path = Path(path)
    if path.suffix not in _FILE_RUNNERS:
        raise ConfigError(f"cannot run {path}: expected one of {', '.join(_FILE_RUNNERS)}.")
    if not path.is_file():
        raise ConfigError(f"exported model {path} does not exist.")
    return _FILE_RUNNERS[path.suffix](path, threads=threads)
