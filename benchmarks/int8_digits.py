"""What 8-bit post-training quantization costs MobileNeXt and MobileNetV2, trained the same way.

The paper's claim (Table 10): after int8 PTQ MobileNeXt keeps 3.55 points more ImageNet top-1 than
MobileNetV2. Here both are trained with the same recipe (``configs/digits.yaml``) on the embedded digits,
exported to TFLite fp32 and int8 (PT2E + LiteRT quantizer, calibrated on training images), and evaluated
in the LiteRT interpreter on the whole held-out split. Then the two files of each model are timed
interleaved at batch 1, which gives the int8 speed-up at the trained resolution (the 224 px speed-up is
in ``mobilenext benchmark --runtimes tflite tflite-int8``).

    python benchmarks/int8_digits.py [-o runs/int8] [--models mobilenext_100 mobilenetv2_100] [--epochs 20]

Runs already trained in the output folder are reused (``--resume auto`` finishes an interrupted one).
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path

from mobilenext.api import export_checkpoint, restore_model
from mobilenext.classification.config import parse_train_args
from mobilenext.classification.train import train
from mobilenext.deploy import open_runner
from mobilenext.deploy.benchmark import interleaved_times
from mobilenext.deploy.samples import sample_images
from mobilenext.tables import format_table


def train_on_digits(model: str, output: Path, epochs: int) -> Path:
    train(
        parse_train_args(
            [
                "--config",
                "digits",
                "--model",
                model,
                "--epochs",
                str(epochs),
                "--output",
                str(output),
                "--resume",
                "auto",
            ]
        )
    )
    return output / "best.pth"


def measure(model: str, checkpoint: Path, folder: Path, calibration_images: int, rounds: int) -> dict:
    exports = {}
    for kind, int8 in (("fp32", False), ("int8", True)):
        exports[kind] = export_checkpoint(
            checkpoint,
            None,
            folder / f"{model}_{kind}.tflite",
            "tflite",
            int8=int8,
            calibration_images=calibration_images,
            verify_images=0,
            threads=1,
        )
        print(exports[kind].summary())
    fp32, int8 = exports["fp32"], exports["int8"]
    net = restore_model(checkpoint).model  # with its run's input settings
    image = sample_images(net, None, split="val", count=1)[0].numpy()
    runners = [open_runner(report.path, threads=1) for report in (fp32, int8)]
    fp32_times, int8_times = interleaved_times(runners, image, rounds, warmup=10)
    fp32_ms, int8_ms = statistics.median(fp32_times) * 1e3, statistics.median(int8_times) * 1e3
    return {
        "model": model,
        "input": image.shape[-1],
        "top1_pytorch": fp32.top1_reference,
        "top1_tflite_fp32": fp32.top1_exported,
        "top1_tflite_int8": int8.top1_exported,
        "int8_change": int8.top1_exported - fp32.top1_exported,
        "int8_agreement": int8.top1_agreement,
        "fp32_ms": fp32_ms,
        "int8_ms": int8_ms,
        "int8_speedup": fp32_ms / int8_ms,
        "fp32_mb": fp32.megabytes,
        "int8_mb": int8.megabytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mobilenext_100", "mobilenetv2_100"])
    parser.add_argument("-o", "--output", default="runs/int8", type=Path)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=200, help="interleaved batch-1 calls per file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the training log, epoch by epoch
    rows = []
    for model in args.models:
        checkpoint = train_on_digits(model, args.output / model, args.epochs)
        rows.append(measure(model, checkpoint, args.output, args.calibration_images, args.rounds))
    print(format_table(rows, "markdown"), end="")


if __name__ == "__main__":
    main()
