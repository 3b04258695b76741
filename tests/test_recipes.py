"""The packaged recipes are the authors' runs, and the records we write plot beside theirs."""

from __future__ import annotations

import pytest
import yaml
from PIL import Image

from conftest import reference_path
from mobilenext import list_models
from mobilenext.api import plot_runs
from mobilenext.classification.config import TrainConfig
from mobilenext.classification.train import AUTHORS_COLUMNS
from mobilenext.data.reference import REFERENCE_RUNS, reference_summary
from mobilenext.engine.config import list_configs, load_config
from mobilenext.engine.records import write_summary

# our recipe -> the authors' run it reproduces
RECIPES = {
    "mobilenext_100_imagenet": "74_02_full_id_tensor",
    "mobilenext_100_half_id_imagenet": "74_09_i2rnetv3_half_id",
    "mobilenext_efficient_l_imagenet": "4_29M_76_6",
    "mobilenext_efficient_xl_imagenet": "5_68M_76_8",
}
GPUS = 8  # the authors' args log batch_size per GPU; their MobileNeXt-1.0 runs used 8 GPUs (global 512)

# our setting -> their args.yaml key, for settings that must match as logged
SAME = {
    "epochs": "epochs", "cooldown_epochs": "cooldown_epochs", "batch_size": "batch_size", "opt": "opt",
    "momentum": "momentum", "weight_decay": "weight_decay", "sched": "sched", "warmup_epochs": "warmup_epochs",
    "warmup_lr": "warmup_lr", "min_lr": "min_lr", "smoothing": "smoothing", "reprob": "reprob",
    "remode": "remode", "color_jitter": "color_jitter", "seed": "seed", "model_ema": "model_ema",
}  # fmt: skip


def test_every_packaged_recipe_loads_and_names_a_registered_model():
    # detection and NAS recipes: their own tests
    classification = [name for name in list_configs() if not name.startswith(("ssdlite", "darts"))]
    assert set(RECIPES) | {"digits"} == set(classification)
    for name in classification:
        assert load_config(name, TrainConfig)["model"] in list_models()


@pytest.mark.parametrize(("recipe", "run"), list(RECIPES.items()))
def test_recipe_equals_the_authors_args(recipe, run):
    theirs = yaml.safe_load(reference_path(f"official_runs/{run}/args.yaml").read_text())
    ours = load_config(recipe, TrainConfig)
    for key, their_key in SAME.items():
        if their_key in theirs and (key in ours or theirs[their_key] not in (None, False, 0, 0.0)):
            assert ours.get(key) == theirs[their_key], key
    assert ours["lr_base"] == theirs["lr"] and ours["lr_base_size"] == theirs["batch_size"] * GPUS
    if theirs["opt_eps"] != 1e-8:  # timm's default
        assert ours["opt_eps"] == theirs["opt_eps"]
    if theirs["sched"] == "step":
        assert (ours["decay_epochs"], ours["decay_rate"]) == (theirs["decay_epochs"], theirs["decay_rate"])
    if theirs["model_ema"]:
        assert ours["model_ema_decay"] == theirs["model_ema_decay"]
    if theirs["aa"]:
        assert ours["aa"] == theirs["aa"]
    if theirs["drop_connect"]:
        assert (ours["drop"], ours["drop_path"]) == (theirs["drop"], theirs["drop_connect"])


@pytest.mark.parametrize("run", list(REFERENCE_RUNS))
def test_shipped_authors_curves_equal_the_release(run):
    shipped = reference_summary(run)
    text = reference_path(f"official_runs/{run}/summary.csv").read_text().splitlines()
    assert len(shipped) == len(text) - 1 and list(shipped[0]) == list(AUTHORS_COLUMNS)
    assert shipped[-1]["eval_prec1"] == pytest.approx(float(text[-1].split(",")[3]))


def test_plot_draws_a_run_beside_the_authors(tmp_path):
    pytest.importorskip("matplotlib", reason="the [plot] extra (the minimum-versions environment has no extras)")
    rows = [
        {
            "epoch": e,
            "train_loss": 2.0 - e / 10,
            "eval_loss": 1.5 - e / 10,
            "eval_prec1": 50 + e,
            "eval_prec5": 80 + e,
            "lr": 0.1,
        }
        for e in range(5)
    ]
    (tmp_path / "run").mkdir()
    write_summary(tmp_path / "run" / "summary.csv", rows)
    png = plot_runs([tmp_path / "run"], tmp_path / "curves.png", reference="74_02_full_id_tensor")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 800
