"""Deployment: the inference form (BN folded), exports checked in their runtimes, int8, and benchmarks.

Optional packages load only when used: ``pip install 'mobilenext[onnx]'`` for ONNX / onnxruntime,
``'mobilenext[tflite]'`` for litert-torch and the LiteRT interpreter, ``'mobilenext[executorch]'`` for ExecuTorch.
Every name below but ``fuse`` loads its module on first use (``benchmark`` is
``mobilenext.deploy.benchmark.benchmark``).
"""

from .._lazy import lazy_exports
from .fuse import ConvAct, fuse  # noqa: F401  (light: torch only; `fuse` is also its module's name)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BenchmarkReport": "benchmark",
        "profile_onnx": "benchmark",
        "EXPORT_FORMATS": "export",
        "ExportError": "export",
        "ExportReport": "export",
        "export_model": "export",
        "export_restored": "export",
        "quantize_pt2e": "quantize",
        "ExecuTorchRunner": "runtimes",
        "ExportedProgramRunner": "runtimes",
        "OnnxRunner": "runtimes",
        "RuntimeRunner": "runtimes",
        "TFLiteRunner": "runtimes",
        "TorchRunner": "runtimes",
        "open_runner": "runtimes",
        "sample_images": "samples",
    },
)
