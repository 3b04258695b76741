"""8-bit post-training quantization: PyTorch 2 export quantization (PT2E) with the target runtime's quantizer.

Why this path: the paper's int8 numbers come from TF Lite on a phone, and PT2E with litert-torch's
quantizer produces exactly that artefact, a fully integer ``.tflite`` (int8 weights per channel, int8
activations per tensor, int8 input and output) that XNNPACK runs with its int8 kernels. ExecuTorch
documents the same flow with its ``XNNPACKQuantizer``, whose quantized patterns its XNNPACK delegate
lowers to the same int8 kernels. Either quantizer sees the whole graph, so the residual adds (the sandglass
shortcut included) are quantized too and the model never falls back to float between blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, require

__all__ = ["QUANTIZERS", "quantize_pt2e"]

QUANTIZERS = ("tflite", "executorch")  # by the runtime the quantized graph is lowered to


def _quantizer(target: str) -> object:
    """Symmetric int8, weights per output channel: the configuration both runtimes' documentation uses."""
    if target == "tflite":
        require("litert_torch", "tflite")
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

        return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    if target == "executorch":
        quantizer = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch")
        return quantizer.XNNPACKQuantizer().set_global(quantizer.get_symmetric_quantization_config(is_per_channel=True))
    raise ConfigError(f"no int8 quantizer for {target!r}; choose {' or '.join(QUANTIZERS)}.")


@torch.no_grad()
def quantize_pt2e(model: nn.Module, calibration: torch.Tensor, target: str = "tflite") -> tuple[nn.Module, object]:
    """Quantize ``model`` for ``target`` after observing ``calibration`` images; return the quantized graph and
    its quantizer.

    The graph is exported for batch 1 (the phone's shape, which both int8 files hold), so calibration runs
    image by image. ``torch.export`` runs in strict mode because LiteRT's quantizer recognises the adds by
    the source information only strict tracing records.
    """
    if calibration.ndim != 4 or len(calibration) == 0:
        raise ConfigError(f"calibration needs a non-empty NCHW batch of images, got shape {tuple(calibration.shape)}.")
    quantizer = _quantizer(target)
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(model.eval(), (calibration[:1],), strict=True).module()
    prepared = prepare_pt2e(graph, quantizer)
    for image in calibration.split(1):
        prepared(image)
    # ExecuTorch needs the int8 weights as constants; litert-torch folds the weights' quantize ops itself.
    folded = target == "executorch"
    quantized = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=folded))
    # move_exported_model_to_eval rewrites the graph's train-mode ops but leaves the module's `training`
    # flag set, and litert-torch reads the flag (it warns about converting a training-mode model).
    nn.Module.train(quantized, False)
    return quantized, quantizer
