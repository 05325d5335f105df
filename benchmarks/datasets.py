"""Toy dataset figures: generation time, oracle accuracy and wrong-condition pass rates.

    python benchmarks/datasets.py [--seed 0] [--grids DIR]

Prints, for ``toy-cls`` and ``toy-seg`` at their default sizes: the wall time to generate the
dataset (train + test), the oracle's pass rate on the test split with the true condition (clean
and degraded by Gaussian blur σ = 1 px + noise σ = 8/255, roughly what a small diffusion model
produces), its pass rate when each image is paired with a wrong condition (another class /
another image's mask) and on pure-noise images. ``--grids`` also writes example grids
(``toy_cls_grid.png``, ``toy_seg_grid.png``) to look at.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from saadi_core.data.toy_cls import CLASS_NAMES, make_toy_cls
from saadi_core.data.toy_draw import degrade
from saadi_core.data.toy_seg import make_toy_seg

MASK_COLOURS = np.array([[40, 40, 40], [120, 200, 60], [250, 240, 150], [230, 30, 40], [80, 140, 255]], dtype=np.uint8)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _cls_grid(images: np.ndarray, labels: np.ndarray, per_class: int = 8) -> np.ndarray:
    rows = [np.concatenate(list(images[labels == k][:per_class]), axis=1) for k in range(len(CLASS_NAMES))]
    return np.concatenate(rows, axis=0)


def _seg_grid(images: np.ndarray, masks: np.ndarray, per_row: int = 8, rows: int = 3) -> np.ndarray:
    out = []
    for r in range(rows):
        idx = range(r * per_row, (r + 1) * per_row)
        out.append(np.concatenate([images[i] for i in idx], axis=1))
        out.append(np.concatenate([MASK_COLOURS[masks[i]] for i in idx], axis=1))
    return np.concatenate(out, axis=0)


def _save(grid: np.ndarray, path: Path, scale: int = 2) -> None:
    h, w = grid.shape[:2]
    Image.fromarray(grid).resize((w * scale, h * scale), Image.Resampling.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grids", type=Path, default=None, help="write example grids into this folder")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed + 99)
    noise = rng.integers(0, 256, (200, 64, 64, 3)).astype(np.uint8)

    print(f"{'dataset':8s} {'gen s':>6s} {'oracle s/img':>12s} {'true clean':>10s} {'true degr.':>10s} {'wrong cond':>10s} {'noise':>6s}")

    ds, gen = _timed(make_toy_cls, seed=args.seed)
    oracle, test = ds.oracle, ds.test
    clean, t = _timed(oracle.check, test.images, test.labels)
    degraded = oracle.check(degrade(test.images, rng), test.labels)
    wrong_labels = (test.labels + rng.integers(1, len(CLASS_NAMES), len(test))) % len(CLASS_NAMES)
    wrong = oracle.check(test.images, wrong_labels)
    garbage = oracle.check(noise, rng.integers(0, len(CLASS_NAMES), len(noise)))
    print(
        f"{'toy-cls':8s} {gen:6.2f} {t / len(test):12.4f} {clean.mean():10.3f} {degraded.mean():10.3f} {wrong.mean():10.3f} {garbage.mean():6.3f}"
        f"   ({len(ds.train)} train + {len(test)} test)"
    )
    per_class = {name: round(float(np.mean(oracle.predict(test.images[test.labels == k]) == k)), 3) for k, name in enumerate(ds.class_names)}
    print(f"         per-class oracle accuracy (clean): {per_class}; train counts {ds.class_counts('train')}")
    if args.grids:
        _save(_cls_grid(test.images, test.labels), args.grids / "toy_cls_grid.png")

    ds, gen = _timed(make_toy_seg, seed=args.seed)
    oracle, test = ds.oracle, ds.test
    clean, t = _timed(oracle.check, test.images, masks=test.masks)
    degraded_images = degrade(test.images, rng)
    degraded = oracle.check(degraded_images, masks=test.masks)
    other = test.masks[np.roll(np.arange(len(test)), 1)]
    wrong = oracle.check(test.images, masks=other)
    garbage = oracle.check(noise, masks=test.masks[: len(noise)])
    print(
        f"{'toy-seg':8s} {gen:6.2f} {t / len(test):12.4f} {clean.mean():10.3f} {degraded.mean():10.3f} {wrong.mean():10.3f} {garbage.mean():6.3f}"
        f"   ({len(ds.train)} train + {len(test)} test)"
    )
    dice_true = oracle.dice(degraded_images, test.masks)
    dice_wrong = oracle.dice(test.images, other)
    print(
        f"         mean Dice true (degraded) min/median {dice_true.min():.3f}/{np.median(dice_true):.3f}; "
        f"wrong max/median {dice_wrong.max():.3f}/{np.median(dice_wrong):.3f}; threshold {oracle.config.threshold}"
    )
    shares = {k: round(v / sum(ds.class_counts().values()), 4) for k, v in ds.class_counts().items()}
    print(f"         pixel shares (train): {shares}")
    if args.grids:
        _save(_seg_grid(test.images, test.masks), args.grids / "toy_seg_grid.png")


if __name__ == "__main__":
    main()
