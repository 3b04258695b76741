"""A real, if small, DARTS search on this machine: the embedded digits written in CIFAR-10's python format.

There is no CIFAR-10 here and no download, so this searches on the 1,437 training digits (8x8 grey,
upsampled to 32x32 RGB, written as ``cifar-10-batches-py``; the 360 held-out digits become the test
batch), with a reduced supernet so a CPU finishes in minutes. For each search space it runs
``mobilenext nas search``, then reports the derived genotype and the size of its evaluation network at
DARTS's 36 channels and 20 cells, beside DARTS-V2, and the weights each operation family got.

    python benchmarks/nas_digits.py [-o runs/nas-digits] [--spaces darts+sg darts darts+ir] [--epochs 10]
        [--unrolled] [--init-channels 8] [--layers 5] [--arch-lr 3e-3]

Searches already finished in the output folder are reused (``--resume auto`` completes an interrupted one).
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from mobilenext.data.digits import DigitsDataset
from mobilenext.engine.config import config_from_args
from mobilenext.nas import DARTS_V2, load_genotype, network_summary
from mobilenext.nas.search import SearchConfig, search
from mobilenext.tables import format_table


def write_digits_as_cifar(root: Path) -> Path:
    """The digits' train split as five CIFAR-10 batches and its held-out split as the test batch."""
    folder = root / "cifar-10-batches-py"
    if (folder / "batches.meta").is_file():
        return root
    folder.mkdir(parents=True)

    def arrays(split: str):
        data = DigitsDataset(split)
        images = [np.asarray(data[i][0].resize((32, 32), Image.BILINEAR)) for i in range(len(data))]
        labels = [int(data[i][1]) for i in range(len(data))]
        return np.stack(images).transpose(0, 3, 1, 2).reshape(len(images), 3072), labels

    train_data, train_labels = arrays("train")
    for i, part in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
        batch = {b"data": train_data[part], b"labels": [train_labels[j] for j in part]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    test_data, test_labels = arrays("val")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": test_data, b"labels": test_labels}))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": list(DigitsDataset.classes)}))
    return root


def family_weights(genotype_file: Path) -> dict[str, float]:
    """Mean softmax weight of each operation over the normal cell's edges at the end of the search."""
    saved = json.loads(genotype_file.read_text())
    weights = np.asarray(saved["weights"]["normal"]).mean(axis=0)
    return {op: round(float(w), 3) for op, w in zip(saved["ops"], weights)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="runs/nas-digits")
    parser.add_argument("--spaces", nargs="+", default=["darts+sg", "darts", "darts+ir"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--unrolled", action="store_true", help="second order (default: first order)")
    parser.add_argument("--init-channels", type=int, default=8)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("-b", "--batch-size", type=int, default=32)
    parser.add_argument(
        "--arch-lr",
        type=float,
        default=3e-3,
        help="alpha's Adam lr; 10x DARTS's 3e-4, since this search takes ~1/80 of its alpha steps",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output = Path(args.output)
    data = write_digits_as_cifar(output / "data")

    rows, weights = [], {}
    darts_v2 = network_summary(DARTS_V2)
    rows.append(
        {
            "genotype": "DARTS_V2 (published)",
            "params": darts_v2["params"],
            "madds_m": round(darts_v2["madds"] / 1e6),
            "normal cell": darts_v2["normal_ops"],
        }
    )
    for space in args.spaces:
        run = output / f"search-{space}"
        cfg = config_from_args(
            {
                "data": str(data),
                "ops": (space,),
                "unrolled": args.unrolled,
                "epochs": args.epochs,
                "init_channels": args.init_channels,
                "layers": args.layers,
                "batch_size": args.batch_size,
                "arch_lr": args.arch_lr,
                "output": str(run),
                "resume": "auto",
                "workers": 0,
            },
            schema=SearchConfig,
        )
        search(cfg)
        genotype = load_genotype(run / "genotype.json")
        summary = network_summary(genotype)
        rows.append(
            {
                "genotype": f"searched on digits, {space}",
                "params": summary["params"],
                "madds_m": round(summary["madds"] / 1e6),
                "normal cell": summary["normal_ops"],
            }
        )
        weights[space] = family_weights(run / "genotype.json")
        print(f"{space}: {genotype}")
    print("\nEvaluation networks at 36 channels, 20 cells, 10 classes (params without the auxiliary head):")
    print(
        format_table(
            [{**r, "normal cell": ", ".join(f"{n} {op}" for op, n in r["normal cell"].items())} for r in rows],
            "markdown",
        ),
        end="",
    )
    print("\nMean softmax weight per operation over the normal cell's edges at the end of each search:")
    for space, by_op in weights.items():
        print(f"  {space}: " + ", ".join(f"{op} {w:.3f}" for op, w in sorted(by_op.items(), key=lambda x: -x[1])))


if __name__ == "__main__":
    main()
