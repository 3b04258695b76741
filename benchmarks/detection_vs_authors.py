"""Does our detection trainer learn as the authors' does? Our half of the comparison with their ``train.py``.

Three steps, each a subcommand:

    python benchmarks/detection_vs_authors.py data -o runs/dva           # the dataset and the shared backbone init
    python benchmarks/detection_vs_authors.py train -o runs/dva --seeds 0 1 --iterations 1200 --eval-every 300
    python benchmarks/detection_vs_authors.py report -o runs/dva --theirs THEIR_RUN_DIR [THEIR_RUN_DIR ...]

``data`` writes a VOC-format dataset harder than the smoke set (the shapes generator's ``CLUTTERED`` setting:
up to eight shapes per image that may hide each other, clutter strokes, VOC class names so that their
``VOCDataset`` reads it unchanged) and ``backbone.pth.tar``: a MobileNeXt-1.0 initialised once, in the
authors' classification layout, which their detector loads as ``weights/mnext.pth.tar`` and ours with
``--backbone-checkpoint``: both start from the same backbone. ``train`` runs ``mobilenext detect train`` with
their VOC config (``ssdlite320_mobilenext_voc``) shortened to the run (``--iterations`` etc.), once per seed.
Their ``train.py`` runs the same config outside this project (it is theirs, not ours to ship); ``report``
reads its ``log.txt`` (losses every 10 iterations, their evaluator's mAP at each evaluation) beside our
``summary.csv`` files, writes theirs as ``summary.csv`` too (so ``mobilenext plot`` draws both), and prints
the table: mAP by their evaluator's formula (our ``map50_voc07``) at the same iterations, and iterations/s.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
from pathlib import Path

import torch

# The three shapes written as three of VOC's classes: their code knows only VOC's 20.
NAMES = {"circle": "bird", "square": "tvmonitor", "triangle": "boat"}
BACKBONE = "backbone.pth.tar"


def write_data(output: Path, train_images: int, test_images: int, seed: int) -> None:
    from mobilenext.detection.shapes import CLUTTERED, write_shapes_voc
    from mobilenext.models import create_model, ours_to_official

    write_shapes_voc(output / "data", train_images, test_images, size=(240, 400), seed=seed, names=NAMES, **CLUTTERED)
    torch.manual_seed(seed)
    backbone = create_model("mobilenext_100")
    torch.save(ours_to_official(backbone.state_dict(), backbone), output / BACKBONE)
    print(f"wrote {output / 'data'} ({train_images} + {test_images} images) and {output / BACKBONE}")


def schedule(iterations: int) -> dict[str, object]:
    """Their VOC config shortened: lr x 0.1 at two thirds and five sixths, warm-up over a twelfth."""
    return {"lr_steps": [iterations * 2 // 3, iterations * 5 // 6], "warmup_iterations": max(1, iterations // 12)}


def train_ours(output: Path, seeds: list[int], iterations: int, eval_every: int, batch: int, lr: float) -> None:
    from mobilenext.detection.engine import DetectionConfig, train_detector
    from mobilenext.engine.config import config_from_args

    for seed in seeds:
        settings = {
            "config": "ssdlite320_mobilenext_voc",
            "data": str(output / "data"),
            "train_sets": ("2007/trainval",),
            "test_set": "2007/test",
            "backbone_checkpoint": str(output / BACKBONE),
            "iterations": iterations,
            "eval_interval": eval_every,
            "batch_size": batch,
            "lr": lr,
            "seed": seed,
            "workers": 2,
            "output": str(output / f"ours-seed{seed}"),
            "resume": "auto",
            **schedule(iterations),
        }
        train_detector(config_from_args(settings, DetectionConfig))


_THEIR_LOSSES = re.compile(r"iter: (\d+).*?total_loss: [\d.]+ \(([\d.]+)\).*?reg_loss: [\d.]+ \(([\d.]+)\).*?cls_loss: [\d.]+ \(([\d.]+)\)")
_THEIR_TIME = re.compile(r"iter: (\d+).*?time: ([\d.]+) \(([\d.]+)\)")
_THEIR_MAP = re.compile(r"mAP: ([\d.]+)")
_THEIR_EVAL = re.compile(r"Evaluating voc_2007_test dataset")


def read_their_log(run: Path, eval_iterations: list[int]) -> list[dict[str, float]]:
    """Rows like our summary.csv's from their log.txt: the running mean of each loss at each logged iteration
    (their MetricLogger prints value (global average); the averages are kept), and mAP at each evaluation
    (their evaluations run at ``eval_iterations``, in order)."""
    rows, maps = [], []
    for line in (run / "log.txt").read_text().splitlines():
        if found := _THEIR_LOSSES.search(line):
            iteration, total, reg, cls = found.groups()
            rows.append({"iteration": int(iteration), "train_loss": float(total), "bbox_loss": float(reg),
                         "cls_loss": float(cls)})  # fmt: skip
        elif found := _THEIR_MAP.search(line):
            maps.append(float(found.group(1)))
    for iteration, value in zip(eval_iterations, maps):
        rows.append({"iteration": iteration, "map50": value})
    return sorted(rows, key=lambda r: r["iteration"])


def seconds_per_iteration(run: Path) -> float:
    """Their MetricLogger's global average of the step time at the last logged iteration."""
    times = [float(m.group(3)) for m in map(_THEIR_TIME.search, (run / "log.txt").read_text().splitlines()) if m]
    return times[-1]


def report(output: Path, theirs: list[Path], eval_every: int, iterations: int) -> None:
    evals = list(range(eval_every, iterations + 1, eval_every))
    table: dict[int, dict[str, list[float]]] = {it: {"ours": [], "theirs": []} for it in evals}
    speed = {"ours": [], "theirs": []}
    for run in sorted(output.glob("ours-seed*")):
        with (run / "summary.csv").open() as f:
            for row in csv.DictReader(f):
                if int(row["iteration"]) in table:
                    table[int(row["iteration"])]["ours"].append(float(row["map50_voc07"]))
                    speed["ours"].append(float(row["train_img_per_sec"]))
    for run in theirs:
        rows = read_their_log(run, evals)
        summary = run / "summary.csv"
        columns = ["iteration", "train_loss", "bbox_loss", "cls_loss", "map50"]
        with summary.open("w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        for row in rows:
            if "map50" in row and row["iteration"] in table:
                table[row["iteration"]]["theirs"].append(row["map50"])
        speed["theirs"].append(1 / seconds_per_iteration(run))
    print("| iteration | ours map50_voc07 (per seed) | theirs mAP (per seed) |")
    print("| ---: | --- | --- |")
    for iteration, values in table.items():
        ours = ", ".join(f"{100 * v:.1f}" for v in values["ours"])
        their = ", ".join(f"{100 * v:.1f}" for v in values["theirs"])
        print(f"| {iteration} | {ours} | {their} |")
    if speed["ours"] and speed["theirs"]:
        print(f"ours: {statistics.median(speed['ours']):.2f} img/s (median over evaluation rounds); theirs: "
              f"{statistics.median(speed['theirs']):.3f} iterations/s (their global average)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("data", "train", "report"))
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/detection_vs_authors"))
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--test-images", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--iterations", type=int, default=1200)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("-b", "--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--theirs", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    if args.step == "data":
        write_data(args.output, args.train_images, args.test_images, seed=0)
    elif args.step == "train":
        train_ours(args.output, args.seeds, args.iterations, args.eval_every, args.batch_size, args.lr)
    else:
        report(args.output, args.theirs, args.eval_every, args.iterations)


if __name__ == "__main__":
    main()
