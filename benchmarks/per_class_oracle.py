"""Per-class oracle pass of a toy-cls run's base and aligned samples, and its pairs per class.

Alignment trains one adapter for every class, so a gain on the whole can hide classes that lose.
This reads a finished run directory (nothing is recomputed) and prints one markdown row per class:

    python benchmarks/per_class_oracle.py runs/toy-cls-ssd-resnet18-tiny [more run dirs]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saadi_core.data.dataset import Dataset
from saadi_core.data.toy_cls import CLASS_NAMES, make_toy_cls
from saadi_core.interfaces import Sample
from saadi_core.samples_io import load_samples, to_uint8_nhwc


def toy_cls_of(manifest: dict[str, Any]) -> Dataset:
    """The run's toy-cls dataset (its oracle judges the samples): the dataset seed, else the run's."""
    config = manifest["config"]
    return make_toy_cls(seed=int(config["dataset"]["options"].get("seed", config["seed"])))


def judge(data: Dataset, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: whether the oracle passes it, and its class id."""
    images = to_uint8_nhwc(torch.stack([s.image for s in samples]))
    labels = np.array([s.condition.class_id for s in samples])
    return data.oracle.check(images, labels=labels), labels


def oracle_by_class(run: Path, stage: str, data: Dataset) -> dict[str, tuple[float, int]]:
    """``{class: (pass rate, n)}`` of one sample stage, judged by the dataset's oracle."""
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    passed, labels = judge(data, load_samples(run / stages[stage]["path"]))
    return {
        name: (float(passed[labels == c].mean()), int((labels == c).sum()))
        for c, name in enumerate(CLASS_NAMES)
    }


def pairs_by_class(run: Path) -> dict[str, int]:
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    pool = load_samples(run / stages["generate-pool"]["path"])
    pairs = json.loads((run / stages["pair"]["path"] / "pairs.json").read_text())["pairs"]
    counts = dict.fromkeys(CLASS_NAMES, 0)
    for winner, _ in pairs:
        counts[CLASS_NAMES[pool[winner].condition.class_id]] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+", help="finished toy-cls run directories")
    args = parser.parse_args()
    print("| run | class | base oracle pass | aligned oracle pass | change (points) | pairs |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        data = toy_cls_of(json.loads((run / "manifest.json").read_text()))
        base = oracle_by_class(run, "sample-base", data)
        aligned = oracle_by_class(run, "sample-aligned", data)
        pairs = pairs_by_class(run)
        for name in CLASS_NAMES:
            (b, n), (a, _) = base[name], aligned[name]
            print(
                f"| {run.name} | {name} | {100 * b:.0f} % | {100 * a:.0f} % | "
                f"{100 * (a - b):+.0f} (n = {n}) | {pairs[name]} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
