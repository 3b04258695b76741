"""``mobilenext nas search|train|show``: the NAS tasks' command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._io import add_overwrite_flag, check_output_file
from ..checks import COUNT

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..engine.config import add_config_arguments
    from .search import SearchConfig
    from .train import DEFAULT_RECIPE, NasTrainConfig

    nas = parser.add_subparsers(dest="nas_command", required=True, metavar="NAS_COMMAND")
    q = nas.add_parser(
        "search",
        help="DARTS search on CIFAR (first or second order); writes genotype.json/.png",
        description="Settings: DARTS's search recipe < --config < flags. --ops picks the space: "
        "darts, darts+sg (the default: with the sandglass block), darts+ir, or operation names.",
    )
    add_config_arguments(q, SearchConfig)
    q.set_defaults(nas_func=_search)
    q = nas.add_parser(
        "train",
        help="train the evaluation network of a genotype on CIFAR (DARTS's recipe)",
        description=f"Settings: defaults < --config (default {DEFAULT_RECIPE}: 600 epochs, SGD 0.025 "
        "cosine, batch 96) < flags. Under `torchrun` it runs DDP. Evaluate with `mobilenext validate`.",
    )
    add_config_arguments(q, NasTrainConfig)
    q.set_defaults(nas_func=_train)
    q = nas.add_parser("show", help="draw a genotype's cells and count its evaluation network's parameters")
    q.add_argument("--genotype", default="DARTS_V2", help="DARTS_V1, DARTS_V2, a JSON file or Genotype(...) text")
    q.add_argument("--channels", type=COUNT, default=36, help="initial channels of the evaluation network [36]")
    q.add_argument("--layers", type=COUNT, default=20, help="cells of the evaluation network [20]")
    q.add_argument("--auxiliary", action="store_true", help="also count the network with its auxiliary head")
    q.add_argument("--num-classes", type=COUNT, default=10)
    q.add_argument("-o", "--output", help="PNG of both cells (default: <genotype>.png here; '' to skip)")
    add_overwrite_flag(q)
    q.set_defaults(nas_func=_show)


def run(args: argparse.Namespace) -> int:
    return args.nas_func(args)


def _settings(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("nas_command", "nas_func")}


def _search(args: argparse.Namespace) -> int:
    from ..engine.config import config_from_args
    from .search import SearchConfig, search

    search(config_from_args(_settings(args), SearchConfig))
    return 0


def _train(args: argparse.Namespace) -> int:
    from ..engine.config import config_from_args
    from .train import DEFAULT_RECIPE, NasTrainConfig, train_network

    given = _settings(args)
    given.setdefault("config", DEFAULT_RECIPE)
    train_network(config_from_args(given, NasTrainConfig))
    return 0


def _show(args: argparse.Namespace) -> int:
    from .genotypes import load_genotype
    from .network import network_summary

    genotype = load_genotype(args.genotype)
    output = None
    if args.output != "":
        named = args.output or f"{_genotype_stem(args.genotype)}.png"
        output = check_output_file(named, args.overwrite, ".png", [args.genotype])
    summary = network_summary(genotype, args.channels, args.layers, args.auxiliary, args.num_classes)
    out = args.out
    print(genotype, file=out)
    for cell in ("normal", "reduce"):
        print(f"  {cell:>6} cell: " + ", ".join(f"{n} x {op}" for op, n in summary[f"{cell}_ops"].items()), file=out)
    print(
        f"evaluation network: {args.layers} cells, {args.channels} initial channels, {args.num_classes} classes: "
        f"{summary['params']:,} params (DARTS's count: without the auxiliary head), {summary['madds'] / 1e6:.0f}M "
        f"MAdds at 32x32" + (f"; {summary['params_with_auxiliary']:,} with it" if args.auxiliary else ""),
        file=out,
    )
    if output is not None:
        from .plot import plot_genotype

        drawn = plot_genotype(genotype, output, title=_genotype_stem(args.genotype), overwrite=args.overwrite)
        print(f"drew both cells into {drawn}", file=out)
    return 0


def _genotype_stem(spec: str) -> str:
    return "genotype" if spec.lstrip().startswith("Genotype(") else Path(spec).stem
