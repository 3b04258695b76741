"""Our MobileNeXt module against the authors' in PyTorch, on equal weights: as shipped and fused, eager and compiled.

"As shipped" is the module as built, in eval mode, called on a contiguous NCHW tensor: what a user who calls
the model gets. "Fused" is what ``mobilenext predict``, ``inference_model`` and ``mobilenext benchmark`` run
(``mobilenext.deploy.fuse``, channels-last). The two modules are first checked to give the same logits. Times
are medians of interleaved calls in one process (shuffled order each round). At a tiny input the convs cost
little and the time is mostly Python's module calls; at 224 px it is mostly the convs.

    python benchmarks/pytorch_vs_authors.py [--model mobilenext_100] [--sizes 16 224] [--runtimes eager compiled]
                                            [--rounds 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from mobilenext import MobileNeXtError
from mobilenext.checks import COUNT
from mobilenext.deploy import fuse
from mobilenext.deploy.benchmark import AUTHORS, TUNING_VARIABLES, build_model, interleaved_times
from mobilenext.models import ours_to_official

FORMS = ("as shipped", "fused")


def _prepare(model: torch.nn.Module, form: str, runtime: str) -> tuple[torch.nn.Module, torch.memory_format]:
    memory_format = torch.channels_last if form == "fused" else torch.contiguous_format
    if form == "fused":
        model = fuse(model).to(memory_format=memory_format)
    if runtime == "compiled":
        model = torch.compile(model, dynamic=False)
    return model, memory_format


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenext_100", help="mobilenext_WWW or mobilenext_WWW_half_id")
    parser.add_argument("--sizes", type=COUNT, nargs="+", default=[16, 224])
    parser.add_argument("--runtimes", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"])
    parser.add_argument("--rounds", type=COUNT, default=50)
    parser.add_argument("--threads", type=COUNT, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        ours, authors = build_model(args.model), build_model(AUTHORS + args.model)
    except MobileNeXtError as error:
        raise SystemExit(f"error: {error}") from None
    authors.load_state_dict(ours_to_official(ours.state_dict(), ours))

    print("| input | runtime | form | ours ms | authors' ms | ours / authors |")
    print("| ---: | --- | --- | ---: | ---: | ---: |")
    for size in args.sizes:
        image = torch.randn(1, 3, size, size)
        torch.testing.assert_close(ours(image), authors(image), rtol=1e-4, atol=1e-4)
        for runtime in args.runtimes:
            for form in FORMS:
                # Each compiled instance of a class adds a cache entry whose guards every later call of that
                # class may check first: compile one form of each model at a time.
                torch.compiler.reset()
                (ours_form, memory_format), (authors_form, _) = (_prepare(m, form, runtime) for m in (ours, authors))
                x = image.contiguous(memory_format=memory_format)
                times = interleaved_times([ours_form, authors_form], x, args.rounds)
                ours_ms, authors_ms = (1e3 * statistics.median(t) for t in times)
                ratio = ours_ms / authors_ms
                print(f"| {size} | {runtime} | {form} | {ours_ms:.3f} | {authors_ms:.3f} | {ratio:.3f} |")
    tuning = " ".join(f"{k}={os.environ[k]}" for k in TUNING_VARIABLES if os.environ.get(k)) or "none"
    print(f"\n{args.model}, batch 1, {args.threads} thread(s), torch {torch.__version__}, tuning: {tuning}.")


if __name__ == "__main__":
    main()
