"""Training throughput (images/s, forward + backward + SGD step) of MobileNeXt vs MobileNetV2 on this machine.

Measured interleaved (A B A B ...) in one process after warm-up; medians and ratios, as DESIGN.md asks.

    python benchmarks/train_throughput.py [--batch-size 32] [--img-size 224] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import mobilenext


def make_step(name: str, batch_size: int, img_size: int, channels_last: bool):
    model = mobilenext.create_model(name, num_classes=1000)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    images = torch.randn(batch_size, 3, img_size, img_size).contiguous(memory_format=memory_format)
    targets = torch.randint(0, 1000, (batch_size,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> float:
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenext_100", "mobilenetv2_100"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--memory-formats", nargs="+", default=["channels_last", "contiguous"])
    args = parser.parse_args()

    variants = {
        (m, f): make_step(m, args.batch_size, args.img_size, f == "channels_last")
        for m in args.models
        for f in args.memory_formats
    }
    for step in variants.values():  # warm-up: allocator, oneDNN primitive caches
        step(), step()
    times = {key: [] for key in variants}
    for _ in range(args.rounds):
        for key, step in variants.items():
            times[key].append(step())

    print(
        f"train step, batch {args.batch_size}, {args.img_size} px, {torch.get_num_threads()} threads, "
        f"median of {args.rounds} interleaved rounds"
    )
    print("| model | memory format | img/s | s/step | vs first model |")
    print("| --- | --- | ---: | ---: | ---: |")
    for fmt in args.memory_formats:
        base = statistics.median(times[(args.models[0], fmt)])
        for model in args.models:
            median = statistics.median(times[(model, fmt)])
            print(f"| {model} | {fmt} | {args.batch_size / median:.1f} | {median:.3f} | {median / base:.2f}x time |")


if __name__ == "__main__":
    main()
