"""Wall time of an example study from scratch (issue: the smallest example in ≤ 15 min).

Runs ``saadi --quiet study FILE`` with a fresh runs directory and prints the wall time, the time
spent per stage kind summed over all runs of the study (shared stages count once: they are
computed by the first run that needs them), and the study's downstream table.

    python benchmarks/study_time.py examples/studies/quick.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def stage_seconds(study_root: Path) -> dict[str, float]:
    """Seconds per stage kind, each shared stage directory counted once."""
    totals: dict[str, float] = defaultdict(float)
    for meta_file in (study_root / "stages").glob("*/stage.json"):
        meta = json.loads(meta_file.read_text())
        kind = re.sub(
            r"-(s\d+|\d+(\.\d+)?x.*)$", "", meta["name"]
        )  # downstream-aligned-1x-s0 -> downstream-aligned
        totals[kind] += meta.get("seconds", 0.0)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", type=Path)
    parser.add_argument(
        "--runs-dir", type=Path, default=None, help="default: a new temporary directory"
    )
    args = parser.parse_args()

    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="saadi-study-bench-"))
    env = dict(os.environ, SAADI_RUNS_DIR=str(runs_dir))
    started = time.perf_counter()
    done = subprocess.run(["saadi", "--quiet", "study", str(args.study)], env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"study failed with exit code {done.returncode}")
        return done.returncode
    summary_file = next(runs_dir.glob("*/study.json"))
    summary = json.loads(summary_file.read_text())
    print(
        f"{args.study}: {seconds:.0f} s wall ({seconds / 60:.1f} min) on {os.cpu_count()} CPU(s); results {summary_file}"
    )
    for kind, value in stage_seconds(summary_file.parent).items():
        print(f"  {kind:<28} {value:7.1f} s")
    real = summary["real_only"]
    print(f"  {summary['metric']}: real only {real['mean']:.3f} ± {real['std']:.3f}")
    for arm in summary["arms"]:
        for scale, cell in arm["downstream"].items():
            print(f"  {arm['name']:<20} {scale}x  {cell['mean']:.3f} ± {cell['std']:.3f}")
    for c in summary["comparisons"]:
        ci = f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]" if c["ci95"] else "—"
        print(
            f"  {c['arm']:<20} {c['scale']:g}x − real: {c['difference']:+.3f} {ci} {c['verdict']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
