"""Does aligning beat filtering on what the images show? Oracle pass per class of a finished toy-cls
run's base, ``filter``, aligned and ``aligned + filter`` sample sets.

``filter`` is the study arm of the same name (``saadi_core.filter_arm``): the base generator's
held-out samples, kept only where the run's selector scores them ≥ h and topped up from fresh seeds
to the same count per class. It is the cheaper alternative a reviewer asks about first. The
script reopens the run (every stage up to the aligned samples must be cached; the filtered sets
are added to its store as ``sample-filter`` / ``sample-aligned-filter``) and compares the sets'
oracle pass with Fisher's exact test — a filtered set is not paired with the base seed for seed,
so McNemar does not apply:

    python benchmarks/filter_oracle.py RUN_DIR [more run dirs]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from per_class_oracle import judge, toy_cls_of  # the sibling script (benchmarks/ is sys.path[0])
from scipy.stats import fisher_exact

from saadi_core.config import RunConfig
from saadi_core.data.toy_cls import CLASS_NAMES
from saadi_core.filter_arm import stage_filter
from saadi_core.generation import generate
from saadi_core.registry import get_registry
from saadi_core.samples_io import load_samples
from saadi_core.session import RunSession


def filtered_sets(run: Path) -> dict[str, Path]:
    """Reopen ``run`` and return the sample directories of the four sets (filters computed once)."""
    config = json.loads((run / "manifest.json").read_text())["config"]
    config |= {"runs_dir": str(run.parent), "name": run.name}
    session = RunSession(RunConfig(**config), get_registry(), quiet=True, doc=None)
    try:
        sets = generate(session, aligned=True)
        base, aligned_samples = sets.samples["base"], sets.samples["aligned"]
        trained, selector = sets.trained, sets.selector
        return {
            "base": base.path,
            "filter": stage_filter(session, "filter", base, trained, selector).path,
            "aligned": aligned_samples.path,
            "aligned + filter": stage_filter(
                session, "aligned-filter", aligned_samples, trained, selector, sets.aligned
            ).path,
        }
    finally:
        session.store.release()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+", help="finished toy-cls run directories")
    args = parser.parse_args()
    print(
        f"| run | set | {' | '.join(CLASS_NAMES)} | all | − base (Fisher p) | − filter (Fisher p) |"
    )
    print("|---|---|" + "---|" * (len(CLASS_NAMES) + 3))
    for run in args.runs:
        dataset = toy_cls_of(json.loads((run / "manifest.json").read_text()))
        passed = {}
        for name, path in filtered_sets(run).items():
            ok, labels = judge(dataset, load_samples(path))
            passed[name] = ok
            rates = " | ".join(
                f"{100 * ok[labels == c].mean():.0f} %" for c in range(len(CLASS_NAMES))
            )
            versus = [
                compare(ok, passed[ref]) if ref in passed and ref != name else ""
                for ref in ("base", "filter")
            ]
            print(
                f"| {run.name} | {name} | {rates} | {100 * ok.mean():.1f} % | {versus[0]} | {versus[1]} |",
                flush=True,
            )
    return 0


def compare(ok: np.ndarray, ref: np.ndarray) -> str:
    """Difference of pass rates in points with Fisher's exact two-sided p."""
    table = [[int(ok.sum()), int((~ok).sum())], [int(ref.sum()), int((~ref).sum())]]
    return f"{100 * (ok.mean() - ref.mean()):+.1f} (p = {fisher_exact(table).pvalue:.2g})"


if __name__ == "__main__":
    raise SystemExit(main())
