"""What checksums and locks cost a run (issue 17): hashing every stage output when it is written
and verifying it when it is found cached, plus a stage lock per stage and the run lock, against
the cut-down run's own wall time.

    python benchmarks/integrity_overhead.py [RUN_DIR] [--repeats 5]

RUN_DIR is a finished run (default: the cut-down run of ``tests/test_end_to_end.py`` is made in a
temporary directory first, which takes minutes on 2 CPU cores). Prints the run's wall time (the
sum of its stage times from the manifest when RUN_DIR is given), its stage outputs in MB, and the
median over ``--repeats`` of: hashing all outputs (write side), verifying all of them (load side),
one acquire + release of a stage lock times the number of stages plus one run lock, and the data
stage's content fingerprint of the run's dataset (computed on every run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from saadi_core import locks
from saadi_core.data.fingerprint import dataset_fingerprint
from saadi_core.integrity import checksum_tree, verify_tree
from saadi_core.registry import Registry
from saadi_core.store import STAGE_META

CUT_DOWN = [
    "dataset.options.n_train=100",
    "dataset.options.n_test=50",
    "generator.options.max_steps=20",
    "selector.options.epochs=1",
    "aligner.options.steps=4",
    "aligner.options.validate_every=2",
    "pool.n_per_condition=8",
    "evaluation.n_per_condition=8",
    "downstream.kind=resnet18",
    "downstream.options.epochs=1",
]


def make_cut_down_run(runs_dir: Path) -> tuple[Path, float]:
    cmd = [
        sys.executable,
        "-m",
        "saadi_core.cli",
        "--quiet",
        "run",
        "--runs-dir",
        str(runs_dir),
        "--name",
        "cut",
        "--generator",
        "ssd",
        "--selector",
        "resnet18",
        "--pairing",
        "best-worst",
    ]
    for assignment in CUT_DOWN:
        cmd += ["--set", assignment]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return runs_dir / "cut", time.perf_counter() - started


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.run_dir is None:
            run_dir, wall = make_cut_down_run(Path(tmp))
            how = "measured wall time of `saadi run` (cut-down)"
        else:
            run_dir = args.run_dir
            manifest = json.loads((run_dir / "manifest.json").read_text())
            wall = sum(s.get("seconds") or 0.0 for s in manifest["stages"].values())
            how = "sum of stage times in the manifest"
        manifest = json.loads((run_dir / "manifest.json").read_text())
        stage_dirs = [
            (run_dir / s["path"]).resolve() for s in manifest["stages"].values() if s.get("path")
        ]
        sums = {d: checksum_tree(d, exclude=(STAGE_META,)) for d in stage_dirs}
        n_bytes = sum(f["size"] for s in sums.values() for f in s.values())
        n_files = sum(len(s) for s in sums.values())

        hash_s = median_time(
            lambda: [checksum_tree(d, exclude=(STAGE_META,)) for d in stage_dirs], args.repeats
        )
        verify_s = median_time(lambda: [verify_tree(d, sums[d]) for d in stage_dirs], args.repeats)
        lock_dir = Path(tmp) / "locks"

        def lock_all() -> None:
            for i, d in enumerate(stage_dirs):
                with locks.stage_lock(lock_dir, d.name, f"{i:012x}"):
                    pass
            locks.lock_run(lock_dir)
            locks.release_run(lock_dir)

        lock_s = median_time(lock_all, args.repeats)
        spec = manifest["config"]["dataset"]
        dataset = Registry.discover(entry_points=False).create(
            "dataset", spec["kind"], spec.get("options") or {}
        )
        fingerprint_s = median_time(lambda: dataset_fingerprint(dataset), args.repeats)

    overhead = hash_s + verify_s + lock_s + fingerprint_s
    print(
        f"run: {run_dir} — {len(stage_dirs)} stages, {n_files} files, {n_bytes / 1e6:.1f} MB of stage outputs"
    )
    print(f"run wall time: {wall:.1f} s ({how})")
    print(f"hash all outputs (written once per stage): {hash_s * 1000:.1f} ms")
    print(f"verify all outputs (each cached load):      {verify_s * 1000:.1f} ms")
    print(f"stage locks x{len(stage_dirs)} + run lock:             {lock_s * 1000:.1f} ms")
    n_images = len(dataset.train) + len(dataset.test)
    print(f"dataset fingerprint ({n_images} images):        {fingerprint_s * 1000:.1f} ms")
    print(f"total overhead: {overhead * 1000:.1f} ms = {100 * overhead / wall:.2f} % of the run")


if __name__ == "__main__":
    main()
