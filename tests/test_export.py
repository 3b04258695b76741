"""Exports run back in their own runtimes (onnxruntime, LiteRT, ExecuTorch, torch.export) and match PyTorch."""

from __future__ import annotations

import sys

import onnx
import pytest
import torch

import mobilenext
from helpers import randomise_norms
from mobilenext.api import export_checkpoint
from mobilenext.cli import main
from mobilenext.deploy.benchmark import build_model
from mobilenext.deploy.export import ExportError, export_model
from mobilenext.deploy.runtimes import open_runner
from mobilenext.deploy.samples import sample_images
from mobilenext.errors import ConfigError, MissingDependencyError, MobileNeXtError

SIZE = 64  # small inputs keep the exports quick; the graphs are the full networks

MODELS = {
    "alpha 1": ("mobilenext_100", {}),
    "alpha 1/2": ("mobilenext_100", {"identity_multiplier": 0.5}),
    "efficient": ("mobilenext_efficient_l", {}),
}


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """Real images (held-out digits) at the export resolution."""
    model = mobilenext.create_model("mobilenext_100", num_classes=10)
    return sample_images(model, None, split="val", count=12, img_size=SIZE)[0]


def _model(key: str) -> torch.nn.Module:
    name, kwargs = MODELS[key]
    return randomise_norms(mobilenext.create_model(name, num_classes=10, **kwargs))


def _assert_matches(report, tolerance: float = 1e-4) -> None:
    assert report.images == 12 and report.top1_agreement == 1.0
    assert report.max_abs_logit > 0.1  # real logits, not the near-zero output of an untrained head
    assert report.max_abs_diff <= tolerance * report.max_abs_logit


@pytest.mark.parametrize("key", list(MODELS))
def test_onnx_round_trip(key, digits, tmp_path):
    report = export_model(_model(key), tmp_path / "m.onnx", verify=digits)
    _assert_matches(report)
    graph = onnx.load(str(report.path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    ops = [node.op_type for node in graph.node]
    assert "ScatterND" not in ops
    if key != "efficient":  # (whose bypass split is a real Split + Concat)
        assert "Concat" not in ops and "Slice" not in ops  # the partial shortcut is a masked, fusable add
    assert ops.count("BatchNormalization") == (1 if key == "efficient" else 0)  # only its head norm stays
    logits = open_runner(report.path)(digits[:3].numpy())  # another batch size than the check used
    assert logits.shape == (3, 10)


@pytest.mark.parametrize(
    "key", [k if k == "alpha 1" else pytest.param(k, marks=pytest.mark.slow) for k in MODELS]
)  # the ONNX round trip covers every variant; TFLite's conversion path is one
def test_tflite_round_trip(key, digits, tmp_path):
    report = export_model(_model(key), tmp_path / "m.tflite", verify=digits)
    _assert_matches(report)
    assert report.input_shape == (1, 3, SIZE, SIZE)


@pytest.mark.parametrize("key", list(MODELS))
def test_executorch_round_trip(key, digits, tmp_path):
    report = export_model(_model(key), tmp_path / "m.pte", verify=digits)
    _assert_matches(report)
    assert report.input_shape == (1, 3, SIZE, SIZE)  # a phone file: batch 1, run image by image
    operators, delegates = _executorch_plan(report.path)
    assert operators == [] and set(delegates) == {"XnnpackBackend"}  # all of it runs in XNNPACK's kernels
    assert open_runner(report.path)(digits[:3].numpy()).shape == (3, 10)


def _executorch_plan(path) -> tuple[list[str], list[str]]:
    """The operators a ``.pte`` file runs in ExecuTorch's own kernels, and the delegates it hands the rest to."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    plan = deserialize_pte_binary(path.read_bytes()).program.execution_plan[0]
    return [op.name for op in plan.operators], [delegate.id for delegate in plan.delegates]


def test_torch_export_program_round_trip(digits, tmp_path):
    report = export_model(_model("alpha 1/2"), tmp_path / "m.pt2", verify=digits)
    _assert_matches(report, tolerance=1e-5)


def test_authors_slice_assignment_exports_as_a_scatter_unless_it_spans_every_channel(tmp_path):
    """Why our block adds a masked shortcut at alpha < 1: the authors' slice assignment becomes one ScatterND
    per shortcut block. At alpha 1 (their release) the slice spans every channel and torch's exporter folds
    it into an Add: their graph is then op for op ours (the TorchScript exporter, ``dynamo=False``, keeps
    the scatter and adds shape arithmetic; we do not export that way)."""

    def op_types(name: str) -> list[str]:
        report = export_model(build_model(name), tmp_path / f"{name.replace(':', '_')}.onnx", img_size=SIZE)
        return [node.op_type for node in onnx.load(str(report.path)).graph.node]

    assert op_types("authors:mobilenext_100_half_id").count("ScatterND") == 12  # 12 blocks with a shortcut
    assert op_types("authors:mobilenext_100") == op_types("mobilenext_100")


@pytest.fixture(scope="module")
def digits_checkpoint(digits_run):
    """conftest's MobileNeXt-0.35 trained with the digits recipe (about 95% top-1): int8 has to keep real
    decisions, not random ones."""
    return digits_run[0] / "best.pth"


def test_int8_tflite_agrees_with_float_on_most_labels(digits_checkpoint, tmp_path):
    report = export_checkpoint(
        digits_checkpoint, None, tmp_path / "q.tflite", "tflite", int8=True, calibration_images=64, verify_images=0
    )
    assert report.int8 and report.images == 359  # the whole held-out split
    assert report.input_shape == (1, 3, 32, 32)  # the checkpoint's resolution
    assert report.top1_reference > 80 and report.top1_agreement >= 0.9
    assert abs(report.top1_exported - report.top1_reference) <= 5
    float_file = export_checkpoint(digits_checkpoint, None, tmp_path / "f.tflite", "tflite", verify_images=4)
    assert report.megabytes < 0.4 * float_file.megabytes  # int8 weights: about a quarter of float32


def test_int8_executorch_agrees_with_float_on_most_labels(digits_checkpoint, tmp_path):
    report = export_checkpoint(
        digits_checkpoint, None, tmp_path / "q.pte", "pte", int8=True, calibration_images=64, verify_images=0
    )
    assert report.int8 and report.images == 359 and report.input_shape == (1, 3, 32, 32)
    assert report.top1_reference > 80 and report.top1_agreement >= 0.9
    assert abs(report.top1_exported - report.top1_reference) <= 5
    float_bytes = 4 * sum(p.numel() for p in mobilenext.create_model("mobilenext_035", num_classes=10).parameters())
    assert report.megabytes * 2**20 < 0.4 * float_bytes  # int8 weights: about a quarter of float32
    assert _executorch_plan(report.path)[0] == []  # no (de)quantize op left outside XNNPACK's int8 kernels


def test_export_cli_checks_the_file_and_names_the_model(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "digits.onnx"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(digits_checkpoint),
                "--format",
                "onnx",
                "-o",
                str(out),
                "--verify-images",
                "16",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"wrote {out} (onnx, input Nx3x32x32" in printed and "top-1 agreement 100.0%" in printed
    assert "top-1 on their labels" in printed


# --- bad input: one sentence, nothing lost ---------------------------------------------------------------


class _Svd(torch.nn.Module):
    """An op neither ONNX nor TFLite can express."""

    def forward(self, x):
        return torch.linalg.svd(x.mean((2, 3)).reshape(-1, 3, 1))[1]


@pytest.mark.parametrize("suffix", ["onnx", "tflite"])
def test_unsupported_op_is_named_and_an_existing_file_survives(suffix, tmp_path):
    path = tmp_path / f"m.{suffix}"
    path.write_bytes(b"the previous export")
    with pytest.raises(ExportError, match=f"{suffix} exporter cannot translate this model: .*linalg_svd"):
        export_model(_Svd(), path, img_size=8)
    assert path.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_unsupported_format_and_options(tmp_path):
    model = mobilenext.create_model("mobilenext_035")
    with pytest.raises(ConfigError, match="unsupported export format '.pb'"):
        export_model(model, tmp_path / "m.pb")
    with pytest.raises(ConfigError, match="int8 export is for TFLite and ExecuTorch"):
        export_model(model, tmp_path / "m.onnx", int8=True, calibration=torch.zeros(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="should end in .tflite"):
        export_model(model, tmp_path / "m.onnx", fmt="tflite")


def test_output_in_a_missing_folder(tmp_path, capsys):
    target = tmp_path / "nowhere" / "m.onnx"
    with pytest.raises(MobileNeXtError, match="folder .*nowhere does not exist"):
        export_model(mobilenext.create_model("mobilenext_035"), target, img_size=32)
    assert main(["export", "--model", "mobilenext_035", "-o", str(target), "--verify-images", "2"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("module", "extra", "fmt"),
    [("onnxruntime", "onnx", "onnx"), ("litert_torch", "tflite", "tflite"), ("executorch.exir", "executorch", "pte")],
)
def test_missing_runtime_package_names_the_extra(module, extra, fmt, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to import
    with pytest.raises(MissingDependencyError, match=rf"pip install 'mobilenext\[{extra}\]'"):
        export_model(mobilenext.create_model("mobilenext_035"), tmp_path / f"m.{fmt}", img_size=32)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_runner_refuses_unknown_or_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="expected one of"):
        open_runner(tmp_path / "m.bin")
    with pytest.raises(ConfigError, match="does not exist"):
        open_runner(tmp_path / "m.onnx")


def test_tflite_runs_the_authors_forward_image_by_image(digits, tmp_path):
    """The authors' in-place add converts to a SELECT built for batch 1; the runner feeds one image at a time."""
    model = randomise_norms(build_model("authors:mobilenext_035_half_id"))
    report = export_model(model, tmp_path / "a.tflite", verify=digits)
    _assert_matches(report)
    assert open_runner(report.path)(digits[:3].numpy()).shape == (3, 1000)
