"""Base vs aligned over several run seeds: the evidence issues 4, 5 and 10 ask for.

Runs ``saadi run --seed S`` (the README's main job, plus any extra ``saadi run`` arguments) for
every seed, each in its own run directory, and prints one row per seed from its ``summary.json``:
wall time, selector and oracle pass rates of base and aligned samples drawn from the same seeds,
the flips (fail→pass / pass→fail) with the exact McNemar p-value, and the downstream metric of
real, real + base and real + aligned. Rows are printed as each run ends; finished runs are reused
(the run store caches stages), so an interrupted benchmark resumes.

    python benchmarks/alignment_seeds.py --seeds 0 1 2
    python benchmarks/alignment_seeds.py --seeds 0 1 2 -- --generator ssi --selector segformer
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _rate(block: dict) -> str:
    return (
        f"{100 * block['base_rate']:.1f}% → {100 * block['aligned_rate']:.1f}% "
        f"({block['difference_points']:+.1f} pts, +{block['fail_to_pass']}/−{block['pass_to_fail']}, p={block['p_value']:.3g})"
    )


def _downstream(summary: dict) -> str:
    down = summary.get("downstream", {})
    metric = down.get("metric", "?")
    parts = [
        f"{k} {v['mean']:.3f}"
        for k, v in sorted(down.items())
        if isinstance(v, dict) and "mean" in v
    ]
    return f"{metric}: " + ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/benchmark-seeds"))
    parser.add_argument("run_args", nargs="*", help="extra arguments for `saadi run` (after --)")
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        name = f"seed{seed}"
        command = [
            "saadi",
            "--quiet",
            "run",
            "--seed",
            str(seed),
            "--runs-dir",
            str(args.runs_dir),
            "--name",
            name,
            *args.run_args,
        ]
        started = time.perf_counter()
        done = subprocess.run(command, check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            print(
                f"seed {seed}: `{' '.join(command)}` failed with exit code {done.returncode}",
                file=sys.stderr,
            )
            return done.returncode
        summary = json.loads((args.runs_dir / name / "summary.json").read_text())
        stage_seconds = sum(summary.get("timings_s", {}).values())
        row = {
            "seed": seed,
            "wall_s": round(seconds, 1),
            "stage_s": round(stage_seconds, 1),
            "selector_pass": summary["selector_pass"],
            "oracle_pass": summary.get("oracle_pass"),
            "downstream": summary.get("downstream"),
        }
        rows.append(row)
        print(f"seed {seed}: {seconds:.0f} s wall ({stage_seconds:.0f} s in stages)")
        print(f"  selector pass  {_rate(summary['selector_pass'])}")
        if summary.get("oracle_pass"):
            print(f"  oracle pass    {_rate(summary['oracle_pass'])}")
        print(f"  downstream     {_downstream(summary)}", flush=True)

    selector_up = sum(
        r["selector_pass"]["aligned_rate"] > r["selector_pass"]["base_rate"] for r in rows
    )
    print(f"\naligned selector pass rate > base on {selector_up}/{len(rows)} seeds")
    oracle_rows = [r for r in rows if r["oracle_pass"]]
    if oracle_rows:
        at_least = sum(
            r["oracle_pass"]["aligned_rate"] >= r["oracle_pass"]["base_rate"] for r in oracle_rows
        )
        significant_up = sum(
            r["oracle_pass"]["difference_points"] >= 5 and r["oracle_pass"]["p_value"] < 0.05
            for r in oracle_rows
        )
        significant_down = sum(
            r["oracle_pass"]["difference_points"] < 0 and r["oracle_pass"]["p_value"] < 0.05
            for r in oracle_rows
        )
        print(f"aligned oracle pass rate ≥ base on {at_least}/{len(oracle_rows)} seeds")
        print(
            f"oracle +≥5 pts with McNemar p < 0.05 on {significant_up}/{len(oracle_rows)} seeds; significantly worse on {significant_down}"
        )
    (args.runs_dir / "alignment_seeds.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
