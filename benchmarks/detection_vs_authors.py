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
the table: mAP by their evaluator's formula (our ``map50_voc07``) and each round's mean training loss at the
same iterations, and iterations/s over the rounds (for speed, run short trainings of both alternately on a quiet
machine: round times of long runs carry whatever else ran meanwhile).
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


_THEIR_LOSSES = re.compile(  # their logger's running value, then the average since the start in brackets
    r"iter: (\d+).*?total_loss: [\d.]+ \(([\d.]+)\).*?reg_loss: [\d.]+ \(([\d.]+)\).*?cls_loss: [\d.]+ \(([\d.]+)\)"
)
_THEIR_TIME = re.compile(r"iter: (\d+).*?time: ([\d.]+) \(([\d.]+)\)")
_THEIR_MAP = re.compile(r"mAP: ([\d.]+)")
_THEIR_EVAL = re.compile(r"Evaluating voc_2007_test dataset")


def read_their_log(run: Path, eval_iterations: list[int]) -> list[dict[str, float]]:
    """Rows like our summary.csv's from their log.txt, one per evaluation: the mean of each loss over the round
    (their MetricLogger prints ``value (average since the start)``; the round's mean follows from two averages:
    (b * avg_b - a * avg_a) / (b - a)), their mAP, and their seconds per iteration over the round."""
    averages: dict[int, tuple[float, ...]] = {}
    times: dict[int, float] = {}
    maps = []
    for line in (run / "log.txt").read_text().splitlines():
        if found := _THEIR_LOSSES.search(line):
            averages[int(found[1])] = tuple(map(float, found.groups()[1:]))
            times[int(found[1])] = float(_THEIR_TIME.search(line)[3])
        elif found := _THEIR_MAP.search(line):
            maps.append(float(found[1]))
    rows, previous = [], 0
    for iteration, value in zip(eval_iterations, maps):
        now, before = averages[iteration], averages.get(previous, (0.0, 0.0, 0.0))
        mean = [(iteration * b - previous * a) / (iteration - previous) for a, b in zip(before, now)]
        seconds = (iteration * times[iteration] - previous * times.get(previous, 0.0)) / (iteration - previous)
        rows.append({"iteration": iteration, "train_loss": mean[0], "bbox_loss": mean[1], "cls_loss": mean[2],
                     "map50_voc07": value, "sec_per_iter": seconds})  # fmt: skip
        previous = iteration
    return rows


def report(output: Path, theirs: list[Path], eval_every: int, iterations: int, batch: int) -> None:
    """A Markdown table: at each evaluation, mAP (their evaluator's VOC07 11-point, both sides) and the round's
    mean training loss per seed, ours and theirs; and iterations per second (median over rounds and seeds).
    Their rows are also written as ``summary.csv`` beside their log, so ``mobilenext plot`` draws both."""
    evals = list(range(eval_every, iterations + 1, eval_every))
    table = {it: {"ours": [], "theirs": [], "ours_loss": [], "theirs_loss": []} for it in evals}
    speed: dict[str, list[float]] = {"ours": [], "theirs": []}
    for run in sorted(output.glob("ours-seed*")):
        with (run / "summary.csv").open() as f:
            for row in csv.DictReader(f):
                if int(row["iteration"]) in table:
                    table[int(row["iteration"])]["ours"].append(float(row["map50_voc07"]))
                    table[int(row["iteration"])]["ours_loss"].append(float(row["train_loss"]))
                    speed["ours"].append(float(row["train_img_per_sec"]) / batch)
    for run in theirs:
        rows = read_their_log(run, evals)
        with (run / "summary.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        for row in rows:
            table[row["iteration"]]["theirs"].append(row["map50_voc07"])
            table[row["iteration"]]["theirs_loss"].append(row["train_loss"])
            speed["theirs"].append(1 / row["sec_per_iter"])

    def listed(values: list[float], scale: float = 1.0) -> str:
        return ", ".join(f"{scale * v:.1f}" if scale != 1 else f"{v:.2f}" for v in values)

    print("| iteration | mAP ours (per seed) | mAP theirs (per seed) | loss ours | loss theirs |")
    print("| ---: | --- | --- | --- | --- |")
    for iteration, v in table.items():
        print(f"| {iteration} | {listed(v['ours'], 100)} | {listed(v['theirs'], 100)} | {listed(v['ours_loss'])} | "
              f"{listed(v['theirs_loss'])} |")  # fmt: skip
    for side, values in speed.items():
        if values:
            print(f"{side}: {statistics.median(values):.3f} iterations/s (median of {len(values)} rounds, "
                  f"{min(values):.3f}-{max(values):.3f})")  # fmt: skip


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
        report(args.output, args.theirs, args.eval_every, args.iterations, args.batch_size)


if __name__ == "__main__":
    main()
