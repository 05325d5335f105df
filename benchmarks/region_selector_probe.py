"""Would a selector that judges each region's *look* agree with the toy-seg oracle better than the
segmenter does? A probe on a finished segmentation run's pool, no change to the run.

    python benchmarks/region_selector_probe.py runs/ssi-s0 [runs/ssi-s1 ...] [--patch 13]

Why: the tiny segformer selector scores a sample by its Dice against the mask, and a segmenter
finds a region by its shape and place, so a region painted with another class's look still
segments as its class: on toy-seg version 3 its pass/fail agrees with the oracle at κ 0.1-0.17.
This probe trains, on the run's *real train images only*, the look judge of
``saadi_selectors.looks`` (what ``score_by: look`` uses): a small CNN that tells a region's class
from a ``patch`` × ``patch`` window centred on one of its pixels, so it sees colour and coarse
structure with little of the region's outline; a sample's score is, over its regions, the
smallest mean probability of the region's own class. The threshold is the 10th percentile of the
real test images' scores — set on real data, not on the pool it is judged on.

Prints, per run: the window classifier's accuracy on real test windows, the pool's oracle pass,
and for both selectors κ with the oracle, the pool-wide AUC of the score for oracle pass, the
mean AUC within masks that hold an oracle pass and fail (what within-mask pairs need), and the
masks that give pairs at the threshold.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from saadi_selectors.looks import LookJudge
from seg_pool import _dataset, cohen_kappa

from saadi_core.preferences import load_pool
from saadi_core.samples_io import to_uint8_nhwc


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def report(run: Path, size: int, segformer_threshold: float) -> dict:
    started = time.time()
    dataset = _dataset(run)
    if dataset.oracle is None or dataset.train.masks is None:
        raise SystemExit(f"{run}: needs a segmentation toy set with an oracle")
    judge = LookJudge(len(dataset.class_names), size)
    judge.fit(dataset.train.image_tensor(), torch.from_numpy(dataset.train.masks), 8, seed=0)
    test_masks = torch.from_numpy(dataset.test.masks)
    accuracy = judge.accuracy(dataset.test.image_tensor(), test_masks)
    threshold = float(np.quantile(judge.scores(dataset.test.image_tensor(), test_masks), 0.10))
    samples, segformer = load_pool(run)
    images = to_uint8_nhwc(torch.stack([s.image for s in samples]))
    masks = torch.stack([s.mask for s in samples]).numpy()
    oracle = np.asarray(dataset.oracle.check(images, masks=masks), dtype=bool)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.condition.id, []).append(i)
    mixed = [g for g in groups.values() if oracle[g].any() and (~oracle[g]).any()]

    def judged(score: np.ndarray, h: float) -> dict:
        passed = score >= h
        return {
            "pass": round(float(passed.mean()), 3),
            "kappa": round(cohen_kappa(passed, oracle), 3),
            "auc": round(auc(score, oracle), 3),
            "within_mask_auc": round(float(np.mean([auc(score[g], oracle[g]) for g in mixed])), 3),
            "masks_with_pairs": sum(
                bool(passed[g].any() and (~passed[g]).any()) for g in groups.values()
            ),
        }

    return {
        "run": str(run),
        "window": size,
        "window_test_accuracy": round(accuracy, 3),
        "threshold_real_p10": round(threshold, 3),
        "oracle_pass": round(float(oracle.mean()), 3),
        "masks_with_oracle_pass_and_fail": len(mixed),
        "region_selector": judged(
            judge.scores(torch.stack([s.image for s in samples]), torch.from_numpy(masks)).numpy(),
            threshold,
        ),
        "segformer": judged(np.array(segformer, dtype=float), segformer_threshold),
        "seconds": round(time.time() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--patch", type=int, default=13, help="window size in pixels (odd)")
    parser.add_argument(
        "--threshold", type=float, default=0.9, help="the segformer's threshold h (default 0.9)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        print(json.dumps(report(run, args.patch, args.threshold)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
