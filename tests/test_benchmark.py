"""The benchmark's bookkeeping: every pair measured, ratios to the baseline, files that reload.

Speed itself is never asserted here (see DESIGN.md); `mobilenext benchmark` prints the ratios.
"""

from __future__ import annotations

import csv
import re

import pytest
import torch

from mobilenext.cli import main
from mobilenext.deploy.benchmark import TUNING_VARIABLES, benchmark, build_model, profile_onnx, top1_of
from mobilenext.errors import ConfigError, UnknownModelError
from mobilenext.models.official_model import OfficialMobileNeXt

QUICK = dict(img_size=32, rounds=3, batch_size=4, batch_rounds=2, warmup=1, calibration_images=4, progress=False)


@pytest.fixture(scope="module")
def report():
    return benchmark(
        ["mobilenext_035", "mobilenetv2_035"], ["eager", "onnxruntime"], baseline="mobilenetv2_035", **QUICK
    )


def test_every_model_runtime_pair_is_measured(report):
    pairs = [(row["model"], row["runtime"]) for row in report.rows]
    assert pairs == [(m, r) for m in ("mobilenext_035", "mobilenetv2_035") for r in ("eager", "onnxruntime")]
    for row in report.rows:
        assert 0 < row["p50_ms"] <= row["p90_ms"]
        assert row["img_s_b4"] > 0 and row["peak_mb"] is not None and row["peak_mb"] >= 0
    assert report.rows[0]["top1_paper"] == 64.7  # the paper's MobileNeXt-0.35


def test_the_report_names_the_process_settings_that_change_pytorch_timings(monkeypatch):
    for name in TUNING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4000000000")
    monkeypatch.setenv("TORCHINDUCTOR_FREEZING", "1")
    report = benchmark(["mobilenext_035"], ["eager"], baseline="mobilenext_035", **QUICK)
    assert report.settings["tuning"] == "TORCHINDUCTOR_FREEZING=1 MALLOC_TRIM_THRESHOLD_=4000000000"


def test_ratios_divide_by_the_baseline_on_the_same_runtime(report):
    rows = {(row["model"], row["runtime"]): row for row in report.rows}
    for runtime in ("eager", "onnxruntime"):
        ours, base = rows["mobilenext_035", runtime], rows["mobilenetv2_035", runtime]
        assert base["p50_vs_mobilenetv2_035"] == 1.0
        assert ours["p50_vs_mobilenetv2_035"] == pytest.approx(ours["p50_ms"] / base["p50_ms"])
        assert ours["img_s_vs_mobilenetv2_035"] == pytest.approx(ours["img_s_b4"] / base["img_s_b4"])


def test_report_files_reload(report, tmp_path):
    csv_path, md_path, png_path = report.save(tmp_path / "bench")
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["runtime"] for r in rows] == [r["runtime"] for r in report.rows]
    assert float(rows[0]["p50_ms"]) == pytest.approx(report.rows[0]["p50_ms"], abs=0.01)
    markdown = md_path.read_text()
    assert markdown.startswith("Settings: input 32, threads 1")
    assert re.search(r"^\| mobilenext_035 +\| +eager \|", markdown, re.MULTILINE)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_authors_forward_and_published_figures():
    model = build_model("authors:mobilenext_100_half_id")
    assert isinstance(model, OfficialMobileNeXt) and not model.training
    ours = build_model("mobilenext_100")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ours.parameters())
    assert top1_of("authors:mobilenext_100") == 74.02 and top1_of("mobilenetv2_100") == 72.0
    assert top1_of("mobilenext_100_half_id") == 74.09 and top1_of("resnet50") is None
    with pytest.raises(UnknownModelError, match="authors' forward exists for"):
        build_model("authors:resnet50")


def test_unknown_runtime_is_refused():
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        benchmark(["mobilenext_035"], ["tensorrt"], **QUICK)


def test_onnx_profile_shares_add_up():
    rows = profile_onnx("mobilenext_035", img_size=32, runs=3)
    assert rows[0]["op"].startswith(("Conv", "FusedConv"))  # convolutions dominate
    ops = {row["op"]: row for row in rows}
    # Convolutions are told apart by their weights: 33 depthwise and 40 1x1 in MobileNeXt, plus the stem.
    assert ops["Conv depthwise 3x3"]["nodes"] == 33 and ops["Conv 1x1"]["nodes"] == 40
    assert ops["Conv 3x3"]["nodes"] == 1
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert all(r["ms_per_run"] > 0 for r in rows)


def test_benchmark_cli_writes_its_table(tmp_path, capsys):
    torch.set_num_threads(1)
    argv = [
        "benchmark",
        "--models",
        "mobilenext_035",
        "--runtimes",
        "eager",
        "--baseline",
        "mobilenext_035",
        "--img-size",
        "32",
        "--rounds",
        "2",
        "-b",
        "2",
        "--batch-rounds",
        "1",
        "--format",
        "csv",
        "-o",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("model,runtime,p50_ms,p90_ms,img_s_b2,peak_mb,top1_paper,p50_vs_mobilenext_035")
    assert (tmp_path / "benchmark.png").is_file()
