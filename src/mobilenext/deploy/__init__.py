"""Deployment: the inference form (BN folded), exports checked in their runtimes, int8, and benchmarks.

Optional packages load only when used: ``pip install 'mobilenext[onnx]'`` for ONNX / onnxruntime,
``'mobilenext[tflite]'`` for litert-torch and the LiteRT interpreter, ``'mobilenext[executorch]'`` for ExecuTorch.
"""

from .benchmark import BenchmarkReport, benchmark, profile_onnx
from .export import EXPORT_FORMATS, ExportError, ExportReport, export_checkpoint, export_model
from .fuse import ConvAct, fuse
from .quantize import quantize_pt2e
from .runtimes import (
    ExecuTorchRunner,
    ExportedProgramRunner,
    OnnxRunner,
    Runner,
    TFLiteRunner,
    TorchRunner,
    open_runner,
)
from .samples import sample_images

__all__ = [
    "EXPORT_FORMATS",
    "BenchmarkReport",
    "ConvAct",
    "ExecuTorchRunner",
    "ExportError",
    "ExportReport",
    "ExportedProgramRunner",
    "OnnxRunner",
    "Runner",
    "TFLiteRunner",
    "TorchRunner",
    "benchmark",
    "export_checkpoint",
    "export_model",
    "fuse",
    "open_runner",
    "profile_onnx",
    "quantize_pt2e",
    "sample_images",
]
