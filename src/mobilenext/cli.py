"""``mobilenext <command>``: parse arguments, call the library, print. No model logic lives here."""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, TextIO

from ._io import add_overwrite_flag, check_output_file
from .checks import COUNT, INTERPOLATION, NONNEG_INT, Number, device
from .errors import MobileNeXtError, RunTerminated
from .tables import TABLE_FORMATS


def _cmd_models(args: argparse.Namespace) -> int:
    import timm

    from .models import summarize_model
    from .models.baselines import BASELINE_FIGURES
    from .models.factory import list_models
    from .models.mobilenext import AUTHORS_TOP1, PAPER_FIGURES

    names = list_models(filter=args.filter or "")
    if args.baselines:
        names += timm.list_models("mobilenetv2_*")
    if not names:
        raise MobileNeXtError(f"no model matches {args.filter!r}; run `mobilenext models` to see them all.")
    from .tables import format_table

    figures = {**PAPER_FIGURES, **BASELINE_FIGURES}
    print(format_table([summarize_model(n, figures, AUTHORS_TOP1) for n in names], args.format), end="", file=args.out)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .api import describe_inputs, predict, restore_model
    from .data.images import find_images

    images = find_images(args.images)
    if not images:
        raise MobileNeXtError(f"no images found in {', '.join(args.images)}.")
    restored = restore_model(
        args.checkpoint, args.model, task="classification", use_ema=not args.no_ema, num_classes=args.num_classes
    )
    model = restored.model
    weights = (
        "random weights: pass --checkpoint to classify for real"
        if args.checkpoint is None
        else f"{'EMA weights' if restored.ema else 'weights'} of {args.checkpoint}, {restored.source}"
    )
    print(f"{restored.name} ({weights}); {describe_inputs(restored)}", file=sys.stderr)
    results, skipped = [], []
    csv_rows = csv.writer(args.out, lineterminator="\n") if args.format == "csv" else None
    if csv_rows is not None:
        csv_rows.writerow(["image", "rank", "label", "class", "score"])
    for image, result in predict(model, images, topk=args.topk, batch_size=args.batch_size):
        if isinstance(result, Exception):
            skipped.append({"image": str(image), "error": str(result)})
            print(f"skipped: {result}", file=sys.stderr)
        elif args.format == "json":
            results.append(
                {
                    "image": str(image),
                    "topk": [{"label": label, "class": name, "score": score} for label, name, score in result],
                }
            )
        elif csv_rows is not None:
            csv_rows.writerows(
                [image, rank, label, name, f"{score:.6f}"] for rank, (label, name, score) in enumerate(result, start=1)
            )
        else:
            print(image, file=args.out)
            for rank, (label, name, score) in enumerate(result, start=1):
                print(f"  {rank}. {score:6.2%}  {label:>4}  {name}", file=args.out)
    if args.format == "json":
        document = {
            "model": restored.name,
            "checkpoint": args.checkpoint,
            "ema": restored.ema,
            "inputs": describe_inputs(restored),
            "predictions": results,
            "skipped": skipped,
        }
        print(json.dumps(document, indent=2), file=args.out)
    if len(skipped) == len(images):
        raise MobileNeXtError("none of the images could be read.")
    return 1 if skipped else 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .api import convert

    name = convert(args.src, args.dst, args.to, model=args.model, use_ema=not args.no_ema, overwrite=args.overwrite)
    print(f"wrote {args.dst} ({name}, {args.to} layout)", file=args.out)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .api import validate

    result = validate(
        args.checkpoint,
        model=args.model,
        data=args.data,
        dataset=args.dataset,
        split=args.split,
        use_ema=not args.no_ema,
        img_size=args.img_size,
        crop_pct=args.crop_pct,
        interpolation=args.interpolation,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        amp=args.amp,
        channels_last=args.channels_last,
        num_classes=args.num_classes,
    )
    out = args.out
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "skipped_names"}, indent=2), file=out)
        return 0
    weights = "EMA weights" if result["ema"] else "weights"
    print(
        f"{result['model']} ({weights} of {result['checkpoint']}) on {result['dataset']}, "
        f"{result['img_size']} px, crop {result['crop_pct']}:",
        file=out,
    )
    print(
        f"  top-1 {result['top1']:.2f}  top-5 {result['top5']:.2f}  loss {result['loss']:.4f}  "
        f"{result['images']:,} images  {result['img_per_sec']:.0f} img/s",
        file=out,
    )
    if result["missing_classes"]:
        missing = result["missing_classes"]
        print(f"  over {result['classes']} of the run's classes (no images of {', '.join(missing[:5])}"
              f"{', ...' if len(missing) > 5 else ''})", file=out)  # fmt: skip
    logged = result["logged"]
    if "eval_prec1" in logged:
        key = "ema_eval_prec1" if result["ema"] and "ema_eval_prec1" in logged else "eval_prec1"
        print(f"  logged when saved (epoch {int(logged['epoch'])}): top-1 {logged[key]:.2f}", file=out)
    if result["skipped"]:
        print(f"  skipped {result['skipped']} unreadable image(s): {'; '.join(result['skipped_names'][:5])}", file=out)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .api import export_checkpoint
    from .deploy.export import EXPORT_FORMATS

    if args.output:  # before the note below: a wrong -o is the one thing to say
        inputs = [args.checkpoint] if args.checkpoint else []
        check_output_file(args.output, args.overwrite, EXPORT_FORMATS[args.format], inputs)
    if args.checkpoint is None:
        print(
            f"note: {args.model} has random weights (BatchNorm statistics measured on the check images, so the "
            "check compares logits of ordinary size); pass --checkpoint to export trained ones.",
            file=sys.stderr,
        )
    report = export_checkpoint(
        args.checkpoint,
        args.model,
        args.output,
        args.format,
        num_classes=args.num_classes,
        int8=args.int8,
        data=args.data,
        dataset=args.dataset or "",
        img_size=args.img_size,
        calibration_images=args.calibration_images,
        verify_images=args.verify_images,
        threads=args.threads,
        overwrite=args.overwrite,
    )
    print(report.summary(), file=args.out)
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .deploy.benchmark import BenchmarkReport, benchmark, profile_onnx
    from .tables import format_table

    if args.profile:
        for model in args.models:
            rows = profile_onnx(model, img_size=args.img_size, threads=args.threads)
            title = f"onnxruntime kernel time of {model}, batch 1, {args.img_size} px, {args.threads} thread(s):"
            print(title, file=args.out if args.format != "csv" else sys.stderr)
            print(format_table(rows[: args.profile], args.format), end="", file=args.out)
        return 0
    if args.output:  # before minutes of exports and timing
        BenchmarkReport.check_outputs(args.output, args.overwrite)
    report = benchmark(
        args.models,
        args.runtimes,
        img_size=args.img_size,
        threads=args.threads,
        rounds=args.rounds,
        batch_size=args.batch_size,
        batch_rounds=args.batch_rounds,
        baseline=args.baseline,
    )
    print(report.table(args.format), end="", file=args.out)
    print(report.settings_line, file=sys.stderr)
    if args.output:
        print("wrote " + ", ".join(str(p) for p in report.save(args.output, args.overwrite)), file=sys.stderr)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import plot_runs

    runs = [Path(r) for r in args.runs]
    output = Path(args.output) if args.output else (runs[0] if runs[0].is_dir() else runs[0].parent) / "curves.png"
    if runs[0].exists():  # a missing run gets plot_runs's own sentence
        summaries = [r / "summary.csv" if r.is_dir() else r for r in runs]
        check_output_file(output, args.overwrite, ".png", summaries)
    print(f"wrote {plot_runs(runs, output, reference=args.reference, overwrite=args.overwrite)}", file=args.out)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the package's error style: one line on stderr and exit code 2, no usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---- the commands' flags: each builder fills its command's parser and names the function that runs it ------
def _models_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=TABLE_FORMATS, default="table")
    p.add_argument("--filter", help="wildcard on model names, e.g. 'mobilenext_1*'")
    p.add_argument("--baselines", action="store_true", help="add timm's MobileNetV2 models")
    p.set_defaults(func=_cmd_models)


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Classify images with a checkpoint's model, its run's evaluation transform (input size, crop, "
        "normalisation) and its dataset's class names; a plain weights file uses the model's timm "
        "pretrained_cfg and ImageNet names for 1000 classes."
    )
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--checkpoint", help="weights (.pth of `mobilenext train`, .safetensors, the authors' .pth.tar)")
    p.add_argument("--model", help="model name (default: the checkpoint's, or the one its tensor shapes fit)")
    p.add_argument("--num-classes", type=COUNT, help="default: the checkpoint's")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights are present")
    p.add_argument("--topk", type=COUNT, default=5)
    p.add_argument("-b", "--batch-size", type=COUNT, default=32)
    p.add_argument(
        "--format",
        choices=("text", "json", "csv"),
        default="text",
        help="json: one document; csv: image,rank,label,class,score rows (stdout holds only that)",
    )
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    p.set_defaults(func=_cmd_predict)


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src")
    p.add_argument("dst", help="output .safetensors file (a detector: .pth)")
    p.add_argument("--model", help="model name (default: recognised from the tensor shapes)")
    p.add_argument("--to", choices=("timm", "official"), default="timm", help="key layout to write")
    p.add_argument("--no-ema", action="store_true", help="take state_dict even if state_dict_ema is present")
    add_overwrite_flag(p)
    p.set_defaults(func=_cmd_convert)


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="training checkpoint (remembers model and data) or weights file")
    p.add_argument("--model", help="default: the checkpoint's")
    p.add_argument("--data", help="default: the checkpoint's dataset (the embedded digits if none)")
    p.add_argument("--dataset", help="timm dataset name (hfds/..., wds/...)")
    p.add_argument("--split", help="held-out split (default: val/ or validation/)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights are present")
    p.add_argument("--img-size", type=COUNT, help="test-time resolution (default: the training one)")
    p.add_argument(
        "--crop-pct", type=Number(float, 0, 1, low_open=True), help="centre-crop fraction (default: the training one)"
    )
    p.add_argument("--interpolation", type=INTERPOLATION)
    p.add_argument("--num-classes", type=COUNT)
    p.add_argument("-b", "--batch-size", type=COUNT, default=64)
    p.add_argument("-j", "--workers", type=NONNEG_INT)
    p.add_argument("--device", type=device)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", action="store_true", help="print the results as JSON (stdout holds only that)")
    p.set_defaults(func=_cmd_validate)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    from .deploy.export import EXPORT_FORMATS

    p.description = (
        "Export a model with BatchNorm folded, then run the file in its own runtime (onnxruntime, "
        "LiteRT, ExecuTorch, torch.export) on real images and compare with PyTorch."
    )
    p.add_argument("--model", help="model name (default: the checkpoint's)")
    p.add_argument("--checkpoint", help="training checkpoint or weights file (default: random weights)")
    p.add_argument("--format", choices=tuple(EXPORT_FORMATS), default="onnx")
    p.add_argument("--int8", action="store_true", help="8-bit post-training quantization (TFLite, ExecuTorch; PT2E)")
    p.add_argument("-o", "--output", help="output file (default: MODEL[_int8].onnx|.tflite|.pte|.pt2 here)")
    add_overwrite_flag(p)
    p.add_argument("--data", help="images for calibration and checks (default: the checkpoint's, else digits)")
    p.add_argument("--dataset", help="timm dataset name (hfds/..., wds/...)")
    p.add_argument(
        "--img-size",
        type=COUNT,
        help="input resolution (default: the checkpoint's, else the model's: 224 for ImageNet models)",
    )
    p.add_argument("--calibration-images", type=COUNT, default=256, help="training images observed for int8")
    p.add_argument("--verify-images", type=NONNEG_INT, default=64, help="held-out images to check (0: all)")
    p.add_argument("--num-classes", type=COUNT)
    p.add_argument("--threads", type=COUNT, help="runtime threads for the check")
    p.set_defaults(func=_cmd_export)


def _benchmark_arguments(p: argparse.ArgumentParser) -> None:
    from .deploy.benchmark import DEFAULT_MODELS, DEFAULT_RUNTIMES, RUNTIMES

    p.description = (
        "Build each model on each runtime (exports are checked), then time all of them interleaved in "
        "one process. Model names: registered ones, or authors:mobilenext_100[_half_id] for the "
        "authors' forward."
    )
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="MODEL")
    p.add_argument(
        "--runtimes",
        nargs="+",
        default=list(DEFAULT_RUNTIMES),
        choices=RUNTIMES,
        metavar="RUNTIME",
        help=f"from {', '.join(RUNTIMES)} (default: {', '.join(DEFAULT_RUNTIMES)})",
    )
    p.add_argument(
        "--baseline", help="model the ratios divide by, one of --models (default: mobilenetv2_100 when timed)"
    )
    p.add_argument("--img-size", type=COUNT, default=224)
    p.add_argument("--threads", type=COUNT, default=1, help="threads of every runtime (1: the steadiest numbers)")
    p.add_argument("--rounds", type=COUNT, default=50, help="batch-1 calls per runner")
    p.add_argument("-b", "--batch-size", type=COUNT, default=32, help="batch of the throughput measurement")
    p.add_argument("--batch-rounds", type=COUNT, default=5, help="throughput calls per runner")
    p.add_argument("-o", "--output", help="folder for benchmark.csv, benchmark.md and benchmark.png")
    add_overwrite_flag(p)
    p.add_argument("--format", choices=TABLE_FORMATS, default="table")
    p.add_argument("--profile", type=COUNT, metavar="TOP", help="instead: onnxruntime kernel time by op, TOP ops")
    p.set_defaults(func=_cmd_benchmark)


def _plot_arguments(p: argparse.ArgumentParser) -> None:
    from .data.reference import REFERENCE_RUNS

    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_DIR",
        help="run folders (or their summary.csv): training, detection or NAS search runs, one kind per plot",
    )
    p.add_argument("--reference", choices=list(REFERENCE_RUNS), help="add one of the authors' ImageNet curves")
    p.add_argument("-o", "--output", help="PNG path (default: RUN_DIR/curves.png)")
    add_overwrite_flag(p)
    p.set_defaults(func=_cmd_plot)


class _Command(NamedTuple):
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | str  # a builder, or the module of a task's CLI
    description: str | None = None


# The training tasks own their command lines (``add_arguments`` / ``run`` in the named module); a module is
# imported only when its command is the one that runs, so `mobilenext models` never imports the engine.
COMMANDS = {
    "models": _Command("table of the registered models: params, MAdds, the paper's figures", _models_arguments),
    "predict": _Command("top-k classes of images or folders of images", _predict_arguments),
    "convert": _Command(
        "convert a checkpoint between our layout and the authors' (classifiers: safetensors; detectors: .pth)",
        _convert_arguments,
    ),
    "train": _Command(
        "train or fine-tune (no arguments: MobileNeXt on the embedded digits)",
        "mobilenext.classification.train",
        "Train a model. Settings: timm's train.py defaults < dataset defaults < --config < flags. "
        "Under `torchrun --nproc_per_node=N -m mobilenext train ...` it runs DDP.",
    ),
    "validate": _Command("top-1/top-5/loss/speed of a checkpoint on a dataset", _validate_arguments),
    "export": _Command(
        "ONNX / TFLite / ExecuTorch (float or int8) / torch.export file, checked in its runtime", _export_arguments
    ),
    "benchmark": _Command(
        "latency, throughput and memory against MobileNetV2 on several runtimes", _benchmark_arguments
    ),
    "detect": _Command("SSDLite object detection: train, eval, predict, export", "mobilenext.detection.commands"),
    "nas": _Command("DARTS architecture search with the sandglass op: search, train, show", "mobilenext.nas.commands"),
    "plot": _Command("loss and accuracy curves of runs to PNG, optionally beside the authors'", _plot_arguments),
}


def _add_arguments(parser: argparse.ArgumentParser, command: _Command) -> None:
    if callable(command.arguments):
        command.arguments(parser)
        return
    module = importlib.import_module(command.arguments)
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``mobilenext`` parser; with ``command``, only that command's flags are built (and its module imported)."""
    parser = _Parser(prog="mobilenext", description="MobileNeXt models, training and deployment.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        p = sub.add_parser(name, help=spec.help, description=spec.description)
        if command is None or name == command:
            _add_arguments(p, spec)
    return parser


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time of the record, not at the time of the handler:
    ``main()`` may run under a redirected stdout (pytest's capture, ``contextlib.redirect_stdout``, the
    machine-readable mode below) that is closed or elsewhere by the time a later call logs."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def _setup_logging() -> None:
    logger = logging.getLogger("mobilenext")
    if not logger.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


# A file name that is not valid UTF-8 (Python holds its bytes as surrogates) is printed as its own bytes, as ls
# and find print it, so every output format names the file exactly instead of stopping with UnicodeEncodeError.
NAME_BYTES = "surrogateescape"


def _machine_readable(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False)) or getattr(args, "format", None) in ("json", "csv")


@contextlib.contextmanager
def _stdout_for_results_only() -> Iterator[TextIO]:
    """Yield the stream a command's result goes to, and send everything else meant for stdout (log lines,
    warnings, libraries' prints, even native code writing to file descriptor 1) to stderr meanwhile, so
    ``--json`` / ``--format csv`` output can be piped into a parser whatever else happens."""
    results = sys.stdout
    try:
        stdout_fd, stderr_fd = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # a captured stream without a descriptor
        stdout_fd = stderr_fd = None
    saved = None
    if stdout_fd is not None:
        sys.stdout.flush()
        saved = os.dup(stdout_fd)
        os.dup2(stderr_fd, stdout_fd)
        encoding = sys.stdout.encoding or "utf-8"
        results = open(saved, "w", closefd=False, encoding=encoding, errors=NAME_BYTES)  # noqa: SIM115
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield results
    finally:
        results.flush()
        if saved is not None:
            sys.stdout.flush()
            os.dup2(saved, stdout_fd)
            os.close(saved)


def _version() -> str:
    """Ours and the versions we run on, which is what a bug report needs."""
    import timm
    import torch
    import torchvision

    from . import __version__

    runtime = f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}"
    return f"mobilenext {__version__} ({runtime})"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    _setup_logging()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors=NAME_BYTES)
    routed = _stdout_for_results_only() if _machine_readable(args) else contextlib.nullcontext(sys.stdout)
    try:
        with warnings.catch_warnings(), routed as args.out:
            warnings.simplefilter("default")
            return args.func(args)
    except MobileNeXtError as e:
        print(f"mobilenext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RunTerminated:  # SIGTERM during a run: a KeyboardInterrupt, the same clean stop, another exit code
        print(f"mobilenext {args.command}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"mobilenext {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
