"""The command line and the Python inference API."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from importlib.metadata import entry_points, version

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image

import mobilenext
from conftest import reference_params_madds
from helpers import randomise_norms
from mobilenext import ImageError
from mobilenext.api import predict
from mobilenext.cli import main
from mobilenext.models import save_safetensors


def test_models_csv_lists_every_variant_with_exact_figures(capsys):
    assert main(["models", "--format", "csv"]) == 0
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert set(rows) == set(mobilenext.list_models())
    reference = reference_params_madds()
    for name, width in [("mobilenext_140", 1.4), ("mobilenext_100", 1.0), ("mobilenext_035", 0.35)]:
        assert int(rows[name]["params"]) == int(reference[width]["params_official_code"])
        madds = float(rows[name]["madds_m"])
        assert abs(madds - float(reference[width]["madds_M_official_code_conv_linear_only"])) < 0.2
        assert float(rows[name]["paper_top1"]) == float(reference[width]["top1_paper"])
        assert rows[name]["input"] == "224x224"


def test_models_markdown_with_baselines(capsys):
    assert main(["models", "--format", "markdown", "--filter", "mobilenext_100", "--baselines"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| model") and set(lines[1]) <= set("|-: ")
    assert any("| mobilenext_100 " in line for line in lines)
    assert any("| mobilenetv2_100 " in line and "3,504,872" in line for line in lines)


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.jpg", "sub/c.png"]):
        Image.fromarray(rng.integers(0, 255, (40 + i * 10, 50, 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return folder


@pytest.fixture
def ten_class_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("mobilenext_035", num_classes=10)
    path = tmp_path / "tiny.safetensors"
    save_safetensors(model.state_dict(), path)
    return path


def test_predict_folder_batched_with_a_broken_image(image_dir, ten_class_checkpoint, capsys):
    argv = ["predict", str(image_dir), "--model", "mobilenext_035", "--checkpoint", str(ten_class_checkpoint)]
    assert main(argv + ["--topk", "3", "-b", "2"]) == 1  # 1: one image was skipped
    out, err = capsys.readouterr()
    assert "broken.jpg is not a readable image" in err
    blocks = [b for b in out.split("\n") if b and not b.startswith(" ")]
    assert [b.split("/")[-1] for b in blocks] == ["a.png", "b.jpg", "c.png"]
    scores = [float(line.split("%")[0].split()[-1]) for line in out.splitlines() if line.startswith("  ")]
    assert len(scores) == 9 and all(0 <= s <= 100 for s in scores)
    for i in range(0, 9, 3):  # top-k sorted per image
        assert scores[i] >= scores[i + 1] >= scores[i + 2]

    # the CLI and the Python API agree on the top class of each image
    model = mobilenext.get_model("mobilenext_035", pretrained=ten_class_checkpoint)
    top = mobilenext.inference_model(model, image_dir / "a.png", topk=3)
    first = out.splitlines()[1].split()
    assert int(first[2]) == top["pred_label"] and float(first[1].rstrip("%")) == pytest.approx(
        100 * top["pred_score"], abs=0.01
    )
    assert len(top["pred_scores"]) == 3 and top["pred_class"] == str(top["pred_label"])


def test_inference_model_imagenet_names_and_arrays():
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    result = mobilenext.inference_model("mobilenext_035", image, topk=5)
    assert 0 <= result["pred_label"] < 1000 and 0.0 < result["pred_score"] <= 1.0
    assert result["pred_class"] == timm.data.ImageNetInfo().index_to_description(result["pred_label"])
    assert np.all(np.diff(result["pred_scores"]) <= 0)


def test_predict_runs_the_fused_form_and_leaves_the_model_alone():
    model = randomise_norms(mobilenext.create_model("mobilenext_035", num_classes=10)).train()
    image = np.random.default_rng(2).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    ((_, top),) = list(predict(model, [image], topk=10))
    assert model.training and sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 74
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    with torch.no_grad():
        expected = model.eval()(transform(Image.fromarray(image))[None]).softmax(-1)[0]
    assert [label for label, _, _ in top] == expected.argsort(descending=True).tolist()
    assert [score for _, _, score in top] == pytest.approx(expected.sort(descending=True).values.tolist(), abs=1e-6)


def test_inference_model_rejects_a_non_image(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ImageError, match="not a readable image"):
        mobilenext.inference_model(timm.create_model("mobilenext_035"), bad)


def test_predict_only_broken_images(image_dir, capsys):
    assert main(["predict", str(image_dir / "broken.jpg"), "--model", "mobilenext_035"]) == 2
    assert "none of the images could be read" in capsys.readouterr().err


def test_unknown_model_is_one_line_from_the_console_script(image_dir):
    result = subprocess.run(
        [sys.executable, "-m", "mobilenext", "predict", str(image_dir / "a.png"), "--model", "mobilenxt_100"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mobilenext predict: error: unknown model 'mobilenxt_100'; did you mean")
    assert "mobilenext_100" in lines[0]


def test_train_with_bad_data_is_one_line_error(tmp_path, capsys):
    from mobilenext.cli import main

    assert main(["train", "--data", str(tmp_path / "nope"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data folder" in err and "does not exist" in err


def test_train_with_unknown_config_is_one_line_error(capsys):
    from mobilenext.cli import main

    assert main(["train", "--config", "no_such_recipe"]) == 2
    assert "neither a file nor a packaged recipe" in capsys.readouterr().err


def test_version_and_python_dash_m_equal_the_console_script(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out.strip()
    runtime = f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}"
    assert printed == f"mobilenext {version('mobilenext')} ({runtime})"
    (script,) = (e for e in entry_points(group="console_scripts") if e.name == "mobilenext")
    assert script.value == "mobilenext.cli:main"  # the console script is main(), as python -m runs it
    as_module = subprocess.run([sys.executable, "-m", "mobilenext", "--version"], capture_output=True, text=True)
    assert as_module.returncode == 0 and as_module.stdout.strip() == printed
