"""Rate a toy run's pool with the dataset's oracle and write a preferences CSV.

On the toy datasets the oracle knows whether an image really shows its condition; as a "rater"
it gives preference pairs without the selector's mistakes. Aligning on them (``--pairing
preferences``) separates two questions the selector-driven loop mixes: does DPO move the oracle
pass rate when its pairs are right, and how much do wrong selector pairs cost?

    python benchmarks/oracle_preferences.py runs/my-run --out prefs.csv
    saadi run --name my-run --pairing preferences --set pairing.options.file=prefs.csv

(Pass rates and the aligner's validation then use the task's default h, as the selector-paired
run did unless it set another.)

Pairs: within each condition, every oracle-passing sample against every oracle-failing one (the
threshold strategy's cross product, with the oracle as the judge), a seeded random subset of
``--max-per-condition`` where there are more (default 400: 2000 pairs over toy-cls's five classes,
the threshold strategy's default cap). Prints per condition the pool's oracle pass count and the
pairs written, and how often the selector agreed with them.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from saadi_core.evaluation.samples import oracle_pass
from saadi_core.preferences import load_pool, sample_file_name
from saadi_core.registry import Registry


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-per-condition", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = json.loads((args.run / "manifest.json").read_text())["config"]
    entry = Registry.discover().get("dataset", config["dataset"]["kind"])
    dataset = entry.load()(
        entry.build_options(config["dataset"].get("options") or {}, config.get("profile", "tiny"))
    )
    samples, scores = load_pool(args.run)
    passed = oracle_pass(dataset, samples)
    if passed is None:
        raise SystemExit(f"dataset '{dataset.name}' has no oracle")

    rows, agree = [], 0
    rng = np.random.default_rng(args.seed)
    by_condition: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_condition.setdefault(s.condition.id, []).append(i)
    print(f"{'condition':<36} {'pool':>5} {'oracle pass':>11} {'pairs':>6}")
    for condition, members in by_condition.items():
        winners = [i for i in members if passed[i]]
        losers = [i for i in members if not passed[i]]
        pairs = [(w, l) for w in winners for l in losers]
        if len(pairs) > args.max_per_condition:
            pairs = [
                pairs[k]
                for k in sorted(rng.choice(len(pairs), args.max_per_condition, replace=False))
            ]
        rows += [
            (sample_file_name(w, samples[w]), sample_file_name(l, samples[l])) for w, l in pairs
        ]
        agree += sum(scores[w] > scores[l] for w, l in pairs)
        print(f"{condition:<36} {len(members):>5} {len(winners):>11} {len(pairs):>6}")
    with args.out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["winner", "loser"])
        writer.writerows(rows)
    share = f"{agree / len(rows):.2f}" if rows else "—"
    print(
        f"{len(rows)} pairs written to {args.out}; the selector scored the oracle's winner higher in {share} of them"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
