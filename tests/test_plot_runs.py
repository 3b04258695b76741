"""`mobilenext plot`: curves of classification, detection and NAS search runs, and one-line errors otherwise."""

from __future__ import annotations

import pytest
from PIL import Image

from mobilenext.api import plot_runs
from mobilenext.classification.train import AUTHORS_COLUMNS
from mobilenext.cli import main
from mobilenext.detection.engine import SUMMARY_COLUMNS as DETECTION_COLUMNS
from mobilenext.engine import records
from mobilenext.engine.records import write_summary
from mobilenext.errors import ConfigError
from mobilenext.nas.search import SUMMARY_COLUMNS as SEARCH_COLUMNS


# --- summary.csv rows as each trainer writes them --------------------------------------------------------
def classification_rows(epochs: int = 4, ema: bool = False) -> list[dict]:
    rows = []
    for e in range(epochs):
        row = {
            "epoch": e,
            "train_loss": 2.0 - e / 10,
            "eval_loss": 1.5 - e / 10,
            "eval_prec1": 50.0 + e,
            "eval_prec5": 80.0 + e,
        }
        if ema:
            row.update(ema_eval_loss=1.4 - e / 10, ema_eval_prec1=51.0 + e, ema_eval_prec5=81.0 + e)
        rows.append({**row, "lr": 0.1, "epoch_time": 3.5, "train_img_per_sec": 900.0, "skipped_images": 0})
    return rows


def detection_rows(coco: bool = False) -> list[dict]:
    rows = []
    for i, it in enumerate((500, 1000, 1500)):
        row = {
            "iteration": it,
            "train_loss": 3.0 - i / 2,
            "bbox_loss": 1.0 - i / 5,
            "cls_loss": 2.0 - i / 5,
            "lr": 0.01,
        }
        if coco:  # coco_metrics' keys, then map50 = ap50 (detection.metrics)
            row.update(
                ap=0.10 + i / 20,
                ap50=0.25 + i / 20,
                ap75=0.08 + i / 20,
                ap_small=0.01,
                ap_medium=0.1,
                ap_large=0.2,
                map50=0.25 + i / 20,
            )
        else:
            row.update(map50=0.30 + i / 10, map50_voc07=0.29 + i / 10)
        rows.append({**row, "skipped_images": 0})
    return rows


def search_rows() -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 2.0 - e / 5,
            "train_acc": 30.0 + 10 * e,
            "val_loss": 2.1 - e / 5,
            "val_acc": 28.0 + 9 * e,
            "arch_loss": 2.1 - e / 5,
            "lr": 0.025,
            "epoch_time": 60.0,
            "img_per_sec": 400.0,
        }
        for e in range(3)
    ]


def make_run(folder, rows, leading=AUTHORS_COLUMNS):
    folder.mkdir(parents=True)
    write_summary(folder / "summary.csv", rows, leading=leading)
    return folder


@pytest.fixture
def figures(monkeypatch):
    """The figures plot_runs draws (the real ones it saves), to check which curves they hold."""
    drawn = []
    draw = records._draw_runs

    def keep(runs):
        drawn.append(draw(runs))
        return drawn[-1]

    monkeypatch.setattr(records, "_draw_runs", keep)
    return drawn


def curves(ax) -> dict[str, tuple[list[float], list[float]]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def assert_png(path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 800 and image.size[1] > 0


# --- what is drawn ---------------------------------------------------------------------------------------
def test_classification_run_draws_losses_top1_and_ema(tmp_path, figures):
    run = make_run(tmp_path / "cls", classification_rows(ema=True))
    png = plot_runs([run / "summary.csv"], tmp_path / "c.png")  # the file names the run by its folder
    assert_png(png)
    ax_loss, ax_top1 = figures[0].axes
    assert set(curves(ax_loss)) == {"cls train", "cls eval"}
    assert curves(ax_loss)["cls eval"] == ([0, 1, 2, 3], pytest.approx([1.5, 1.4, 1.3, 1.2]))
    assert curves(ax_top1) == {
        "cls top-1": ([0, 1, 2, 3], [50.0, 51.0, 52.0, 53.0]),
        "cls EMA top-1": ([0, 1, 2, 3], [51.0, 52.0, 53.0, 54.0]),
    }
    assert ax_top1.get_xlabel() == "epoch" and ax_top1.get_ylabel() == "top-1 (%)"


def test_classification_run_beside_the_authors_curve(tmp_path, figures):
    run = make_run(tmp_path / "cls", classification_rows())
    assert_png(plot_runs([run], tmp_path / "c.png", reference="74_02_full_id_tensor"))
    labels = list(curves(figures[0].axes[1]))
    assert labels[0] == "cls top-1" and labels[1].startswith("authors: MobileNeXt-1.0") and len(labels) == 2
    assert len(curves(figures[0].axes[1])[labels[1]][0]) > 100  # the authors' whole ImageNet run


def test_voc_detection_run_draws_loss_parts_and_the_authors_voc07_map_in_percent(tmp_path, figures):
    run = make_run(tmp_path / "voc", detection_rows(), leading=DETECTION_COLUMNS)
    assert_png(plot_runs([run], tmp_path / "d.png"))
    ax_loss, ax_map = figures[0].axes
    assert curves(ax_loss) == {
        "voc total": ([500, 1000, 1500], [3.0, 2.5, 2.0]),
        "voc bbox": ([500, 1000, 1500], pytest.approx([1.0, 0.8, 0.6])),
        "voc cls": ([500, 1000, 1500], pytest.approx([2.0, 1.8, 1.6])),
    }
    # their evaluator's VOC07 11-point figure, the one their logs and the paper give
    assert curves(ax_map) == {"voc VOC07 mAP@0.5": ([500, 1000, 1500], pytest.approx([29.0, 39.0, 49.0]))}
    assert ax_map.get_xlabel() == "iteration" and ax_map.get_ylabel() == "VOC07 mAP@0.5 (%)"


def test_coco_detection_run_draws_coco_ap(tmp_path, figures):
    run = make_run(tmp_path / "coco", detection_rows(coco=True), leading=DETECTION_COLUMNS)
    assert_png(plot_runs([run], tmp_path / "d.png"))
    ax_ap = figures[0].axes[1]
    assert curves(ax_ap) == {"coco COCO AP@[.5:.95]": ([500, 1000, 1500], pytest.approx([10.0, 15.0, 20.0]))}
    assert ax_ap.get_ylabel() == "COCO AP@[.5:.95] (%)"


def test_voc_beside_coco_compares_the_map50_both_have(tmp_path, figures):
    voc = make_run(tmp_path / "voc", detection_rows(), leading=DETECTION_COLUMNS)
    coco = make_run(tmp_path / "coco", detection_rows(coco=True), leading=DETECTION_COLUMNS)
    plot_runs([voc, coco], tmp_path / "d.png")
    assert curves(figures[0].axes[1]) == {
        "voc mAP@0.5": ([500, 1000, 1500], pytest.approx([30.0, 40.0, 50.0])),
        "coco mAP@0.5": ([500, 1000, 1500], pytest.approx([25.0, 30.0, 35.0])),
    }


def test_nas_search_run_draws_train_and_held_out_accuracy(tmp_path, figures):
    run = make_run(tmp_path / "search", search_rows(), leading=SEARCH_COLUMNS)
    assert_png(plot_runs([run], tmp_path / "s.png"))
    ax_loss, ax_acc = figures[0].axes
    assert set(curves(ax_loss)) == {"search train", "search held-out half"}
    assert curves(ax_acc) == {
        "search train": ([0, 1, 2], [30.0, 40.0, 50.0]),
        "search held-out half": ([0, 1, 2], [28.0, 37.0, 46.0]),
    }
    assert ax_acc.get_ylabel() == "accuracy (%)"


# --- one-sentence errors before anything is written --------------------------------------------------------
def _no_summary(tmp_path):
    (tmp_path / "empty").mkdir()
    return [tmp_path / "empty"], {}


def _header_only(tmp_path):
    return [make_run(tmp_path / "new", [], leading=DETECTION_COLUMNS)], {}


def _zero_bytes(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "summary.csv").write_text("")
    return [tmp_path / "new" / "summary.csv"], {}


def _foreign_columns(tmp_path):
    return [make_run(tmp_path / "odd", [{"step": 1, "reward": 0.5}], leading=())], {}


def _mixed_kinds(tmp_path):
    return [
        make_run(tmp_path / "cls", classification_rows()),
        make_run(tmp_path / "det", detection_rows(), leading=DETECTION_COLUMNS),
    ], {}


def _reference_with_detection(tmp_path):
    return [make_run(tmp_path / "det", detection_rows(), leading=DETECTION_COLUMNS)], {
        "reference": "74_02_full_id_tensor"
    }


def _reference_with_search(tmp_path):
    return [make_run(tmp_path / "search", search_rows(), leading=SEARCH_COLUMNS)], {"reference": "74_02_full_id_tensor"}


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda tmp_path: ([tmp_path / "nowhere"], {}), r"nowhere does not exist; give a run folder"),
        (_no_summary, r"empty holds no summary\.csv; is it a run folder\? \(a run folder is the --output of"),
        (_header_only, r"no rows: no epochs/evaluations logged yet"),
        (_zero_bytes, r"no rows: no epochs/evaluations logged yet"),
        (
            _foreign_columns,
            r"columns step,reward, which match no kind of run; expected one of: "
            r"epoch,train_loss,eval_loss,eval_prec1 \(classification.*iteration,train_loss,bbox_loss",
        ),
        (_mixed_kinds, r"different kinds on the same axes: cls \(classification\), det \(detection\)"),
        (_reference_with_detection, r"--reference .* classification curve, .* det \(detection\)"),
        (_reference_with_search, r"--reference .* search \(NAS search\)"),
    ],
    ids=[
        "missing",
        "no-summary",
        "header-only",
        "zero-bytes",
        "foreign-columns",
        "mixed-kinds",
        "reference-detection",
        "reference-search",
    ],
)
def test_unplottable_runs_fail_in_one_sentence_before_drawing(tmp_path, monkeypatch, setup, message):
    runs, kwargs = setup(tmp_path)

    def no_matplotlib():
        raise AssertionError("matplotlib was needed before the runs were checked")

    monkeypatch.setattr(records, "pyplot", no_matplotlib)
    output = tmp_path / "curves.png"
    with pytest.raises(ConfigError, match=message) as error:
        plot_runs(runs, output, **kwargs)
    assert "\n" not in str(error.value)
    assert not output.exists()


# --- through the command line ----------------------------------------------------------------------------
def test_cli_plots_a_detection_run(tmp_path, capsys):
    run = make_run(tmp_path / "det", detection_rows(), leading=DETECTION_COLUMNS)
    assert main(["plot", str(run), "-o", str(tmp_path / "c.png")]) == 0
    assert_png(tmp_path / "c.png")
    assert "wrote" in capsys.readouterr().out


def test_cli_says_in_one_line_that_a_folder_is_no_run(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    assert main(["plot", str(tmp_path / "notes")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mobilenext plot: error: ") and "holds no summary.csv" in err
    assert "Traceback" not in err
    assert not (tmp_path / "notes" / "curves.png").exists()
