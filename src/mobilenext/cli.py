"""``mobilenext <command>``: parse arguments, call the library, print. No model logic lives here."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from .errors import MobileNeXtError
from .tables import TABLE_FORMATS


def _cmd_models(args: argparse.Namespace) -> int:
    import timm

    from . import list_models
    from .models import summarize_model
    from .models.baselines import BASELINE_FIGURES
    from .models.mobilenext import AUTHORS_TOP1, PAPER_FIGURES

    names = list_models(args.filter or "")
    if args.baselines:
        names += timm.list_models("mobilenetv2_*")
    if not names:
        raise MobileNeXtError(f"no model matches {args.filter!r}; run `mobilenext models` to see them all.")
    from .tables import format_table

    figures = {**PAPER_FIGURES, **BASELINE_FIGURES}
    print(format_table([summarize_model(n, figures, AUTHORS_TOP1) for n in names], args.format), end="")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from . import get_model
    from .inference import find_images, predict

    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = get_model(args.model, pretrained=args.checkpoint or False, **kwargs)
    if args.checkpoint is None:
        print(f"note: {args.model} has random weights; pass --checkpoint to classify for real.", file=sys.stderr)
    images = find_images(args.images)
    if not images:
        raise MobileNeXtError(f"no images found in {', '.join(args.images)}.")
    failed = 0
    for image, result in predict(model, images, topk=args.topk, batch_size=args.batch_size):
        if isinstance(result, Exception):
            failed += 1
            print(f"skipped: {result}", file=sys.stderr)
            continue
        print(image)
        for rank, (label, name, score) in enumerate(result, start=1):
            print(f"  {rank}. {score:6.2%}  {label:>4}  {name}")
    if failed == len(images):
        raise MobileNeXtError("none of the images could be read.")
    return 1 if failed else 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .models.checkpoint import convert_checkpoint

    name = convert_checkpoint(args.src, args.dst, model_name=args.model, layout=args.to, use_ema=not args.no_ema)
    print(f"wrote {args.dst} ({name}, {args.to} layout)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilenext", description="MobileNeXt models, training and deployment.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="table of the registered models: params, MAdds, the paper's figures")
    p.add_argument("--format", choices=TABLE_FORMATS, default="table")
    p.add_argument("--filter", help="wildcard on model names, e.g. 'mobilenext_1*'")
    p.add_argument("--baselines", action="store_true", help="add timm's MobileNetV2 models")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("predict", help="top-k classes of images or folders of images")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--model", default="mobilenext_100")
    p.add_argument("--checkpoint", help="weights (.safetensors, .pth, .pth.tar; ours, timm's or the authors')")
    p.add_argument("--num-classes", type=int, help="default: the checkpoint's")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("convert", help="convert a checkpoint (e.g. the authors' .pth.tar) to safetensors")
    p.add_argument("src")
    p.add_argument("dst", help="output .safetensors file")
    p.add_argument("--model", help="model name (default: recognised from the tensor shapes)")
    p.add_argument("--to", choices=("timm", "official"), default="timm", help="key layout to write")
    p.add_argument("--no-ema", action="store_true", help="take state_dict even if state_dict_ema is present")
    p.set_defaults(func=_cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args)
    except MobileNeXtError as e:
        print(f"mobilenext {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mobilenext {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
