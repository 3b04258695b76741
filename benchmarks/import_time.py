"""What ``import mobilenext`` costs beyond what it builds on: our modules loaded, other new modules, and the
milliseconds of ``python -X importtime`` spent in ``mobilenext`` once torch, timm and torchvision are imported.

    python benchmarks/import_time.py [--runs 7]

Each run is a fresh interpreter; the report gives the median and every run's figure (note ``uptime`` beside it).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

_CODE = (
    "import sys, torch, timm, torchvision\n"
    "before = set(sys.modules)\n"
    "import mobilenext\n"
    "new = set(sys.modules) - before\n"
    "print(sum(m.startswith('mobilenext') for m in new), sum(not m.startswith('mobilenext') for m in new))\n"
)


def one_run() -> tuple[int, int, float]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", _CODE], capture_output=True, text=True, check=True)
    ours, others = map(int, done.stdout.split())
    cumulative = next(
        int(line.split("|")[1]) for line in done.stderr.splitlines() if re.search(r"\|\s+mobilenext$", line)
    )
    return ours, others, cumulative / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = [one_run() for _ in range(parser.parse_args().runs)]
    times = [ms for _, _, ms in runs]
    print(
        f"import mobilenext: {runs[0][0]} of our modules, {runs[0][1]} other new modules, "
        f"{statistics.median(times):.1f} ms beyond torch+timm+torchvision (median; runs: "
        f"{', '.join(f'{t:.0f}' for t in times)})"
    )


if __name__ == "__main__":
    main()
