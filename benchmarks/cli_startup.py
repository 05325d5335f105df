"""CLI start-up wall time (targets: `saadi --help` ≤ 1 s, `saadi plugins` ≤ 2 s on the reference
2-core CPU). Prints the median and max of N runs of each command as a subprocess, i.e. what a user
waits for, including interpreter start-up.

    python benchmarks/cli_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "saadi --help": ["--help"],
    "saadi --version": ["--version"],
    "saadi plugins": ["plugins"],
    "saadi plugins --json": ["plugins", "--json"],
    "saadi datasets": ["datasets"],
}
TARGETS = {"saadi --help": 1.0, "saadi plugins": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    exe = shutil.which("saadi")
    base = [exe] if exe else [sys.executable, "-m", "saadi_core.cli"]
    print(f"{'command':24} {'median s':>9} {'max s':>7}  target")
    for label, argv in COMMANDS.items():
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run(base + argv, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        target = TARGETS.get(label)
        verdict = (
            ""
            if target is None
            else f"≤ {target:.0f} s: {'met' if statistics.median(times) <= target else 'MISSED'}"
        )
        print(f"{label:24} {statistics.median(times):9.3f} {max(times):7.3f}  {verdict}")


if __name__ == "__main__":
    main()
