"""Would a selector that judges each region's *look* agree with the toy-seg oracle better than the
segmenter does? A probe on a finished segmentation run's pool, no change to the run.

    python benchmarks/region_selector_probe.py runs/ssi-s0 [runs/ssi-s1 ...] [--patch 13]

Why: the tiny segformer selector scores a sample by its Dice against the mask, and a segmenter
finds a region by its shape and place, so a region painted with another class's look still
segments as its class: on toy-seg version 3 its pass/fail agrees with the oracle at κ 0.1-0.17.
This probe trains, on the run's *real train images only*, a small CNN that tells a region's class
from a ``patch`` × ``patch`` window centred on one of its pixels (the region's pixels only, and
which pixels those are), so it sees colour and coarse structure with little of the region's
outline. A sample's score is, over its regions, the smallest mean probability of the region's own
class (16 evenly spaced windows per region). The threshold is the 10th percentile of the real
test images' scores — set on real data, not on the pool it is judged on.

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
import torch.nn.functional as F
from seg_pool import _dataset, cohen_kappa

from saadi_core.preferences import load_pool
from saadi_core.samples_io import to_uint8_nhwc

MIN_PIXELS = 30  # smaller regions are not judged (the oracle skips specks too)


def windows(
    images: np.ndarray, masks: np.ndarray, size: int, per_region: int, rng=None
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """``(N, 4, size, size)`` windows centred on pixels of each region of class ≥ 1 (RGB inside
    the region, 0 outside, and the inside map), their class − 1, and their (image, class)."""
    half = size // 2
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    out, labels, owners = [], [], []
    for i in range(len(images)):
        image = F.pad(x[i : i + 1], (half,) * 4, mode="reflect")[0]
        mask = np.pad(masks[i], half, constant_values=-1)
        for c in range(1, int(masks.max()) + 1):
            ys, xs = np.nonzero(masks[i] == c)
            if len(ys) < MIN_PIXELS:
                continue
            n = min(per_region, len(ys))
            picks = (
                rng.choice(len(ys), size=n, replace=False)
                if rng is not None
                else np.linspace(0, len(ys) - 1, n).round().astype(int)
            )
            for k in picks:
                cy, cx = ys[k] + half, xs[k] + half
                box = (slice(cy - half, cy + half + 1), slice(cx - half, cx + half + 1))
                inside = torch.from_numpy((mask[box] == c).astype(np.float32))
                out.append(torch.cat([image[:, box[0], box[1]] * inside, inside[None]]))
                labels.append(c - 1)
                owners.append((i, c))
    return torch.stack(out), torch.tensor(labels), owners


def classifier(n_classes: int) -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(4, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, n_classes),
    )


def train(images: np.ndarray, masks: np.ndarray, size: int) -> torch.nn.Module:
    x, y, _ = windows(images, masks, size, 24, np.random.default_rng(0))
    torch.manual_seed(0)
    net = classifier(int(y.max()) + 1)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(8):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 256):
            batch = order[start : start + 256]
            loss = F.cross_entropy(net(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net.eval()


def scores(net: torch.nn.Module, images: np.ndarray, masks: np.ndarray, size: int) -> np.ndarray:
    """Per image: the smallest, over its regions, mean probability of the region's own class."""
    x, y, owners = windows(images, masks, size, 16)
    with torch.no_grad():
        probs = torch.cat([F.softmax(net(x[i : i + 2048]), 1) for i in range(0, len(x), 2048)])
    own = probs[torch.arange(len(y)), y].numpy()
    regions: dict[tuple[int, int], list[float]] = {}
    for owner, value in zip(owners, own):
        regions.setdefault(owner, []).append(float(value))
    worst = np.ones(len(images))
    for (i, _), values in regions.items():
        worst[i] = min(worst[i], float(np.mean(values)))
    return worst


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
    net = train(dataset.train.images, dataset.train.masks, size)
    xt, yt, _ = windows(dataset.test.images, dataset.test.masks, size, 16)
    with torch.no_grad():
        accuracy = float((net(xt).argmax(1) == yt).float().mean())
    threshold = float(np.quantile(scores(net, dataset.test.images, dataset.test.masks, size), 0.10))
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
        "region_selector": judged(scores(net, images, masks, size), threshold),
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
