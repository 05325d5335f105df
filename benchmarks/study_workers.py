"""Wall time of a study run sequentially versus with N local worker processes, and whether the two
``study.json`` files are bit-identical (run paths aside).

    python benchmarks/study_workers.py examples/studies/quick.yaml [--workers 2] [--threads 1] [--seeds 0,1]

Both runs start from an empty runs directory and use the same number of cores: each of the N
workers gets ``--threads`` torch threads (``OMP_NUM_THREADS``, 1 by default), the sequential run
N × that many - what one process on an N-core machine uses by default (``--same-threads`` gives
it ``--threads`` too). Torch's float sums depend on the thread count, so the two ``study.json``
files are expected bit-identical only with ``--same-threads`` (as in tests/test_study_workers.py).
The machine's 1-minute load average before and after is printed: a loaded machine slows both runs
unevenly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def run(study: Path, runs_dir: Path, threads: int, executor: list[str]) -> float:
    env = os.environ | {"SAADI_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "saadi_core.cli", "--quiet", "study", str(study), *executor],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per process (both runs)"
    )
    parser.add_argument(
        "--same-threads",
        action="store_true",
        help="give the sequential run --threads too (for a bit-identical study.json)",
    )
    parser.add_argument(
        "--seeds", type=str, default=None, help="override the study's seeds, e.g. 0,1"
    )
    args = parser.parse_args()

    config = yaml.safe_load(args.study.read_text())
    if args.seeds:
        config["seeds"] = [int(s) for s in args.seeds.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="saadi-study-workers-"))
    study = scratch / args.study.name
    study.write_text(yaml.safe_dump(config))
    load_before = os.getloadavg()[0]
    sequential_threads = args.threads * (1 if args.same_threads else args.workers)
    sequential = run(study, scratch / "sequential", sequential_threads, [])
    parallel = run(
        study,
        scratch / "workers",
        args.threads,
        ["--executor", "processes", "--workers", str(args.workers)],
    )
    load_after = os.getloadavg()[0]
    texts = [
        (scratch / d / config["name"] / "study.json")
        .read_text()
        .replace(str(scratch / d), "<runs>")
        for d in ("sequential", "workers")
    ]
    result = {
        "study": str(args.study),
        "seeds": config.get("seeds"),
        "workers": args.workers,
        "threads_sequential": sequential_threads,
        "threads_per_worker": args.threads,
        "sequential_s": round(sequential, 1),
        "workers_s": round(parallel, 1),
        "speed_up": round(sequential / parallel, 2),
        "study_json_identical": texts[0] == texts[1],
        "load_1min_before": load_before,
        "load_1min_after": load_after,
        "cpus": os.cpu_count(),
        "runs_dir": str(scratch),
    }
    print(json.dumps(result))
    return 0 if result["study_json_identical"] or not args.same_threads else 1


if __name__ == "__main__":
    sys.exit(main())
