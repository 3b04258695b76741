"""``mobilenext detect train|eval|predict|export``: the detection task's command line."""

from __future__ import annotations

import argparse
import json
import sys

from .._io import add_overwrite_flag, check_output_file
from ..checks import COUNT, NONNEG_INT, Number, device
from ..errors import MobileNeXtError, require
from ..tables import TABLE_FORMATS
from .settings import DISPLAY_SCORE_THRESH

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..engine.config import add_config_arguments
    from .engine import DetectionConfig

    detect = parser.add_subparsers(dest="detect_command", required=True, metavar="DETECT_COMMAND")
    q = detect.add_parser(
        "train",
        help="train an SSDLite detector on Pascal VOC or COCO",
        description="Settings: defaults < --config < flags. Under `torchrun` it runs DDP.",
    )
    add_config_arguments(q, DetectionConfig)
    q.set_defaults(detect_func=_train)

    q = detect.add_parser("eval", help="VOC mAP@0.5 (area and 11-point) or COCO AP of a detection checkpoint")
    q.add_argument("checkpoint")
    q.add_argument("--data", help="default: the dataset the checkpoint was trained on")
    q.add_argument("--dataset", choices=("auto", "voc", "coco"))
    q.add_argument("--test-set", help="VOC YEAR/SET or COCO split (default: the training run's)")
    q.add_argument("-b", "--batch-size", type=COUNT, default=16)
    q.add_argument("-j", "--workers", type=NONNEG_INT, default=4)
    q.add_argument("--device", type=device)
    q.add_argument("--json", action="store_true", help="print the metrics as JSON (stdout holds only that)")
    q.set_defaults(detect_func=_eval)

    q = detect.add_parser("predict", help="detect objects in images and draw them onto PNGs")
    q.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    q.add_argument("--checkpoint", required=True, help="a `mobilenext detect train` checkpoint")
    q.add_argument(
        "-o",
        "--output",
        default="detections",
        help="folder for the PNGs [detections]; names mirror the inputs' paths where they clash",
    )
    add_overwrite_flag(q)
    q.add_argument(
        "--score-thresh",
        type=Number(float, 0, 1),
        default=DISPLAY_SCORE_THRESH,
        help=f"draw boxes scoring above this [{DISPLAY_SCORE_THRESH}] (the detector's other test settings apply)",
    )
    q.add_argument("--device", type=device)
    q.set_defaults(detect_func=_predict)

    q = detect.add_parser(
        "models",
        help="the authors' four SSDLite-320 detectors: params and MAdds beside their code's and README's",
    )
    q.add_argument("--format", choices=TABLE_FORMATS, default="table")
    q.set_defaults(detect_func=_models)

    q = detect.add_parser("export", help="the detector to ONNX (network + box decoding; NMS left to the runtime)")
    q.add_argument("checkpoint")
    q.add_argument("-o", "--output", help="default: <model>.onnx")
    add_overwrite_flag(q)
    q.set_defaults(detect_func=_export)


def run(args: argparse.Namespace) -> int:
    return args.detect_func(args)


def _train(args: argparse.Namespace) -> int:
    from ..engine.config import config_from_args
    from .engine import DetectionConfig, train_detector

    given = {k: v for k, v in vars(args).items() if k not in ("detect_command", "detect_func")}
    train_detector(config_from_args(given, DetectionConfig))
    return 0


def _restore(checkpoint: str, device=None, runs: bool = True):
    """The detector of ``checkpoint`` (ours or the authors'), on ``device``; ``runs``: it will see images, so
    what its preprocessing needs must be there (the authors' pipeline resizes with OpenCV)."""
    from .files import restore_detector

    restored = restore_detector(checkpoint)
    if runs and restored.model.pipeline == "authors":
        require("cv2", "detection")
    restored.model.to(device or "cpu")
    return restored


def _eval(args: argparse.Namespace) -> int:
    from ..engine.distributed import init_distributed
    from .data import open_detection_data
    from .engine import detection_loader, evaluate_detector

    dist = init_distributed(args.device)
    restored = _restore(args.checkpoint, dist.device)
    trained_on = restored.args
    data = open_detection_data(
        args.data or trained_on["data"],
        args.dataset or ("auto" if args.data else trained_on["dataset"]),  # other data: its own format
        None,
        args.test_set or trained_on["test_set"],
        restored.data_config["img_size"],
        classes=restored.classes,
        pipeline=trained_on.get("pipeline", "torchvision"),  # runs before the authors' pipeline had torchvision's
    )
    if tuple(data.classes) != tuple(restored.classes):
        theirs, ours = restored.classes, data.classes
        raise MobileNeXtError(
            f"{args.checkpoint} detects {len(theirs)} classes ({', '.join(theirs[:3])}, ...) but the "
            f"{data.kind.upper()} data at {args.data or trained_on['data']} has {len(ours)} ({', '.join(ours[:3])}"
            f"{', ...' if len(ours) > 3 else ''}); evaluate it on the dataset it was trained for."
        )
    loader = detection_loader(data.test, args.batch_size, args.workers, False, dist, 0)
    metrics = evaluate_detector(restored.model, loader, data.classes, data.kind, dist.device)
    out = args.out
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "skipped_names"}, indent=2), file=out)
        return 0
    print(f"{restored.name} ({args.checkpoint}) on {data.description}:", file=out)
    print("  " + "  ".join(f"{k} {100 * v:.2f}%" for k, v in metrics.items() if isinstance(v, float)), file=out)
    for name, ap in metrics.get("ap50_per_class", {}).items():
        print(f"    {name:>12}  AP50 {100 * ap:.2f}%", file=out)
    if metrics["skipped"]:
        print(
            f"  skipped {metrics['skipped']} unreadable image(s): {'; '.join(metrics['skipped_names'][:5])}", file=out
        )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..data.images import find_images
    from .predict import detect_images, plan_outputs

    images = find_images(args.images)
    if not images:
        raise MobileNeXtError(f"no images found in {', '.join(args.images)}.")
    outputs = plan_outputs(images, args.output, args.overwrite)  # before any work: inputs and files are safe
    restored = _restore(args.checkpoint, args.device)
    restored.model.score_thresh = args.score_thresh  # what a person wants drawn; NMS and the rest as trained
    classes = restored.classes
    failed = 0
    for path, result in detect_images(restored.model, images, classes, outputs, args.overwrite):
        if isinstance(result, Exception):
            failed += 1
            print(f"skipped: {result}", file=sys.stderr)
            continue
        print(f"{path}: {len(result['boxes'])} object(s)", file=args.out)
        for box, label, score in zip(result["boxes"].tolist(), result["labels"].tolist(), result["scores"].tolist()):
            print(
                f"  {score:6.2%}  {classes[label - 1]:>12}  " + " ".join(f"{v:.0f}" for v in box),
                file=args.out,
            )
    print(f"drew the boxes into {args.output}/", file=args.out)
    if failed == len(images):
        raise MobileNeXtError("none of the images could be read.")
    return 1 if failed else 0


def _models(args: argparse.Namespace) -> int:
    from ..tables import format_table
    from .summary import summarize_detectors

    print(format_table(summarize_detectors(), args.format), end="", file=args.out)
    if args.format == "table":
        print(
            "params: ours; authors_params: their code's (the state dicts it builds); madds_m: convolutions of one "
            "320x320 image, box decoding and NMS excluded. authors_readme: houqb/ssdlite-pytorch-mobilenext's "
            "README (COCO params and MAdds from an earlier revision of it); the paper reports VOC only.",
            file=args.out,
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_detector_onnx

    restored = _restore(args.checkpoint, runs=False)  # the graph takes images already resized
    model, size = restored.model, restored.data_config["img_size"]
    output = check_output_file(args.output or f"{restored.name}.onnx", args.overwrite, ".onnx", [args.checkpoint])
    diff = export_detector_onnx(
        model, output, size, overwrite=args.overwrite, classes=restored.classes, inputs=[args.checkpoint]
    )
    print(
        f"wrote {output} (input Nx3x{size}x{size} in [0, 1]; outputs boxes [N, A, 4] in "
        f"input pixels and scores [N, A, {len(restored.classes)}], column k for class k + 1); onnxruntime vs "
        f"PyTorch max |diff| {diff:.3g}. Score threshold and per-class NMS are the runtime's (this detector's: "
        f"score > {model.score_thresh:g}, NMS IoU {model.nms_thresh:g}, {model.detections_per_img} per image, "
        "stored with the class names in the file's metadata): see mobilenext.detection.export.postprocess.",
        file=args.out,
    )
    return 0
