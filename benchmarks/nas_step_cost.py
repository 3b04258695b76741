"""What one alpha step of the DARTS search costs, relative to one weight step, for each way of taking it.

First order differentiates the validation loss at the current weights. Second order differentiates it
through one virtual SGD step, which needs a mixed Hessian-vector product: exact (autograd, double
backward) or by DARTS's central differences. The variants run interleaved in one process on the same
batch; medians of ``--rounds``.

    python benchmarks/nas_step_cost.py [--init-channels 8] [--layers 5] [-b 32] [--rounds 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mobilenext.nas import OP_PRESETS, Architect, SearchNetwork


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init-channels", type=int, default=8)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("-b", "--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = SearchNetwork(args.init_channels, 10, args.layers, ops=OP_PRESETS["darts+sg"]).to(device)
    model.to(memory_format=torch.channels_last)
    batch = (
        torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last),
        torch.randint(0, 10, (args.batch_size,), device=device),
    )
    optimizer = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)

    def weight_step():
        loss = F.cross_entropy(model(batch[0]), batch[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    architects = {
        "first order": Architect(model, second_order=False),
        "second order, exact Hessian": Architect(model, hessian="exact"),
        "second order, finite differences": Architect(model, hessian="finite-difference"),
    }
    # lr 0 for alpha: every round measures the same network
    for architect in architects.values():
        architect.optimizer.param_groups[0]["lr"] = 0.0
    runs = {
        "weight step": weight_step,
        **{name: (lambda a=a: a.step(batch, batch, 0.025, optimizer)) for name, a in architects.items()},
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run()
    for _ in range(args.rounds):
        for name, run in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["weight step"])
    print(
        f"supernet {args.layers} cells x {args.init_channels} channels, batch {args.batch_size}, {device}, "
        f"medians of {args.rounds} interleaved rounds:"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:>33}: {median:7.3f} s  {median / base:5.2f}x a weight step")


if __name__ == "__main__":
    main()
