"""Export a model to ONNX, TFLite or ExecuTorch (float or int8) or a ``torch.export`` program, and prove the
file works.

Every export is run back in its own runtime on real images and compared with the PyTorch model it came
from: the report carries the largest logit difference and how often the top-1 labels agree. Files are
written to a temporary name and renamed only once the exporter has finished, so an interrupted export
never leaves a broken file where a good one was.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._io import atomic_path, check_output_file, disk_problem
from ..engine.checkpoint import Restored
from ..errors import ConfigError, MobileNeXtError, require
from .fuse import fuse
from .quantize import quantize_pt2e
from .runtimes import open_runner
from .samples import sample_images

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "ExportReport",
    "export_model",
    "export_restored",
    "compare_logits",
    "calibrate_norms",
]

EXPORT_FORMATS = {"onnx": ".onnx", "tflite": ".tflite", "pte": ".pte", "pt2": ".pt2"}
INT8_FORMATS = ("tflite", "pte")  # PT2E with the runtime's own quantizer (see quantize.py)
BATCH_1_FORMATS = ("tflite", "pte")  # phone files: static shapes, batch 1 (the others take any batch)
# What each format needs to write and to check its file, by extra of mobilenext.
_TOOLCHAINS = {
    "onnx": ("onnx", ("onnx", "onnxscript", "onnxruntime")),
    "tflite": ("tflite", ("litert_torch", "ai_edge_litert.interpreter")),
    "pte": ("executorch", ("executorch.exir", "executorch.backends.xnnpack.partition", "executorch.runtime")),
    "pt2": ("", ()),
}


class ExportError(MobileNeXtError, RuntimeError):
    """The exporter could not translate the model (an op the target format does not support, say)."""


@dataclass
class ExportReport:
    path: Path
    format: str
    int8: bool
    input_shape: tuple[int | str, ...]
    megabytes: float
    seconds: float
    images: int
    max_abs_diff: float
    max_abs_logit: float  # scale for max_abs_diff
    top1_agreement: float  # fraction of images whose top-1 label matches PyTorch fp32
    top1_reference: float | None = None  # accuracy (%) on the verification labels, PyTorch fp32
    top1_exported: float | None = None  # the same for the exported file in its runtime

    def summary(self) -> str:
        kind = f"{self.format}{' int8' if self.int8 else ''}"
        shape = "x".join(map(str, self.input_shape))
        lines = [
            f"wrote {self.path} ({kind}, input {shape}, {self.megabytes:.2f} MB, {self.seconds:.1f} s)",
            f"  checked in its runtime on {self.images} images against PyTorch fp32: max |diff| "
            f"{self.max_abs_diff:.3g} (logits up to {self.max_abs_logit:.3g}), "
            f"top-1 agreement {self.top1_agreement:.1%}",
        ]
        if self.top1_reference is not None and self.top1_exported is not None:
            change = self.top1_exported - self.top1_reference
            lines.append(
                f"  top-1 on their labels: PyTorch fp32 {self.top1_reference:.2f}%, "
                f"exported {self.top1_exported:.2f}% ({change:+.2f} points)"
            )
        return "\n".join(lines)


def compare_logits(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(largest absolute difference, fraction of equal top-1 labels) of two logit arrays."""
    if reference.shape != other.shape:
        raise ExportError(f"exported model returns shape {other.shape}, PyTorch {reference.shape}.")
    diff = float(np.abs(reference - other).max())
    agreement = float((reference.argmax(1) == other.argmax(1)).mean())
    return diff, agreement


def _root_cause(error: BaseException) -> str:
    """First line of the innermost error: exporters wrap the useful message ("No ONNX function found for
    aten._linalg_svd") in several layers of generic advice."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


@contextlib.contextmanager
def exporter_errors(fmt: str, folder: Path):
    """Turn an exporter's traceback into one sentence (the traceback stays chained for debugging); a refusal of the
    file system writing into ``folder`` is left to the write path (:func:`mobilenext._io.atomic_path`) to say."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporters' progress chatter
            yield
    except MobileNeXtError:
        raise
    except Exception as error:
        if disk_problem(error, folder) is not None:
            raise
        raise ExportError(f"the {fmt} exporter cannot translate this model: {_root_cause(error)}") from error


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    import onnx

    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        external_data=False,
        verbose=False,
    )
    onnx.checker.check_model(str(path), full_check=True)


def _export_tflite(model: nn.Module, example: torch.Tensor, path: Path, calibration: torch.Tensor | None) -> None:
    import litert_torch

    if calibration is None:
        converted = litert_torch.convert(model, (example,))
    else:
        from litert_torch.quantize.quant_config import QuantConfig

        quantized, quantizer = quantize_pt2e(model, calibration, "tflite")
        converted = litert_torch.convert(quantized, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
    content = getattr(converted, "model_content", None)
    if content is None:  # litert-torch before model_content(): its own writer
        converted.export(str(path))
    else:  # written by Python: LiteRT's own writer aborts the whole process on a full disk (LLVM's IO error)
        path.write_bytes(content())


def _export_pte(model: nn.Module, example: torch.Tensor, path: Path, calibration: torch.Tensor | None) -> None:
    """ExecuTorch with every op it can delegate in XNNPACK's kernels (the CPU backend ExecuTorch ships for
    phones). A shape of its own per file: memory is planned for the largest input a dynamic dimension
    allows, so a dynamic batch would reserve that much for every call."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if calibration is not None:
        model = quantize_pt2e(model, calibration, "executorch")[0]
    program = torch.export.export(model, (example,))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    path.write_bytes(lowered.to_executorch().buffer)


def _export_program(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str | None = None,
    img_size: int = 224,
    int8: bool = False,
    calibration: torch.Tensor | None = None,
    verify: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    threads: int | None = None,
    overwrite: bool = True,
    inputs: Sequence[str | Path] = (),
) -> ExportReport:
    """Write ``model`` (BN folded) to ``path`` and check the file in its runtime on the ``verify`` images
    against ``model`` itself (so a wrong fold would show too).

    ``fmt`` defaults to the file suffix. ``int8`` (TFLite and ExecuTorch) quantizes after calibrating on the
    ``calibration`` images. ``verify`` defaults to random inputs, which check the arithmetic but not the
    labels; pass real images, and their ``labels`` to get the top-1 accuracy before and after export. With
    ``overwrite=False`` an existing ``path`` is an error (``mobilenext export`` without ``--overwrite``); one of
    ``inputs`` (the checkpoint exported) is never written over.
    """
    path = Path(path)
    fmt = fmt or next((f for f, suffix in EXPORT_FORMATS.items() if path.suffix == suffix), None)
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unsupported export format {fmt or path.suffix!r}; choose {', '.join(EXPORT_FORMATS)}.")
    if int8 and fmt not in INT8_FORMATS:
        raise ConfigError(f"int8 export is for TFLite and ExecuTorch (PT2E); use --format tflite or pte, not {fmt}.")
    if int8 and calibration is None:
        raise ConfigError("int8 export needs calibration images.")
    check_output_file(path, overwrite, EXPORT_FORMATS[fmt], inputs)
    extra, modules = _TOOLCHAINS[fmt]
    for module in modules:  # all of them before any work, so a missing one costs nothing
        require(module, extra)

    original, model = model.eval(), fuse(model).float()
    if verify is None:
        verify = torch.randn(8, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    # Phone files hold batch 1; the others take any batch, and tracing them at batch 1 would fix it to 1.
    example = verify[:1].float()
    if fmt not in BATCH_1_FORMATS:
        example = example.expand(2, -1, -1, -1).contiguous()
    start = time.perf_counter()
    with atomic_path(path, overwrite, inputs) as tmp, exporter_errors(fmt, path.parent):
        if fmt == "onnx":
            _export_onnx(model, example, tmp)
        elif fmt == "tflite":
            _export_tflite(model, example, tmp, calibration if int8 else None)
        elif fmt == "pte":
            _export_pte(model, example, tmp, calibration if int8 else None)
        else:
            _export_program(model, example, tmp)
    seconds = time.perf_counter() - start

    with torch.no_grad():
        reference = original.float()(verify).numpy()
    runner = open_runner(path, threads=threads)
    logits = np.concatenate([runner(chunk.numpy()) for chunk in verify.split(32)])
    diff, agreement = compare_logits(reference, logits)
    shape = (1 if fmt in BATCH_1_FORMATS else "N", *example.shape[1:])
    report = ExportReport(
        path,
        fmt,
        int8,
        shape,
        path.stat().st_size / 2**20,
        seconds,
        len(verify),
        diff,
        float(np.abs(reference).max()),
        agreement,
    )
    if labels is not None:
        truth = labels.numpy()
        report.top1_reference = float((reference.argmax(1) == truth).mean() * 100)
        report.top1_exported = float((logits.argmax(1) == truth).mean() * 100)
    return report


def export_restored(
    restored: Restored,
    output: str | Path | None = None,
    fmt: str = "onnx",
    int8: bool = False,
    data: str | None = None,
    dataset: str = "",
    img_size: int | None = None,
    calibration_images: int = 256,
    verify_images: int = 64,
    threads: int | None = None,
    overwrite: bool = True,
) -> ExportReport:
    """Export a restored classifier (``mobilenext.api.restore_model``: a trained checkpoint, or a model with
    random weights), calibrating and verifying on its run's data.

    Calibration images come from the training split, verification images from the held-out split, both
    through the evaluation transform at the checkpoint's input size (without a checkpoint: the model's own,
    224 for the ImageNet models); ``verify_images=0`` takes the whole held-out split, which turns the
    report's top-1 figures into the split's accuracy. A randomly initialised model first gets BatchNorm
    statistics measured on the calibration/verification images (:func:`calibrate_norms`): at timm's
    initial statistics its logits are ~1e-10, and a check of such numbers would prove nothing.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unsupported export format {fmt!r}; choose {', '.join(EXPORT_FORMATS)}.")
    net, trained = restored.model, restored.path is not None
    if output is None:
        output = f"{restored.name}{'_int8' if int8 else ''}{EXPORT_FORMATS[fmt]}"
    inputs = [restored.path] if restored.path else []
    check_output_file(output, overwrite, EXPORT_FORMATS[fmt], inputs)  # before the minutes an export can take
    data = data if data is not None or dataset else restored.args.get("data")
    dataset = dataset or restored.args.get("dataset", "")
    sample = functools.partial(sample_images, net, data, dataset, img_size=img_size)
    verify, labels = sample(split="val", count=verify_images)
    calibration = sample(split="train", count=calibration_images)[0] if int8 else None
    if not trained:
        calibrate_norms(net, calibration if calibration is not None else verify)
    return export_model(
        net,
        output,
        fmt,
        img_size=verify.shape[-1],
        int8=int8,
        calibration=calibration,
        verify=verify,
        labels=labels if trained else None,
        threads=threads,
        overwrite=overwrite,
        inputs=inputs,
    )


@torch.no_grad()
def calibrate_norms(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``model``'s activations on ``images`` (one pass in
    training mode with a cumulative average), leaving the weights alone; returns ``model`` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: after one batch, exactly that batch's statistics
    model.train()
    try:
        model(images)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()
    return model
