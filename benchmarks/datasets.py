"""Toy dataset figures: generation time, oracle accuracy and wrong-condition pass rates.

    python benchmarks/datasets.py [--seed 0] [--grids DIR]

Prints, for ``toy-cls`` and ``toy-seg`` (version 1) at their default sizes: the wall time to generate the
dataset (train + test), the oracle's pass rate on the test split with the true condition (clean
and degraded by Gaussian blur σ = 1 px + noise σ = 8/255, roughly what a small diffusion model
produces), its pass rate when each image is paired with a wrong condition (another class /
another image's mask) and on pure-noise images. For ``toy-seg`` version 2 (opt-in) it
prints the oracle's pass rate on real scenes (clean, noised), on scenes whose regions were painted
with another class's look, on flattened and on blurred regions, and with wrong masks.
``--grids`` also writes example grids (``toy_cls_grid.png``, ``toy_seg_grid.png``,
``toy_seg_v2_grid.png``) to look at.
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
from saadi_core.data.toy_seg_v2 import draw_scenes, make_toy_seg_v2

MASK_COLOURS = np.array(
    [[40, 40, 40], [120, 200, 60], [250, 240, 150], [230, 30, 40], [80, 140, 255]], dtype=np.uint8
)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _cls_grid(images: np.ndarray, labels: np.ndarray, per_class: int = 8) -> np.ndarray:
    rows = [
        np.concatenate(list(images[labels == k][:per_class]), axis=1)
        for k in range(len(CLASS_NAMES))
    ]
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
    parser.add_argument(
        "--grids", type=Path, default=None, help="write example grids into this folder"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed + 99)
    noise = rng.integers(0, 256, (200, 64, 64, 3)).astype(np.uint8)

    print(
        f"{'dataset':8s} {'gen s':>6s} {'oracle s/img':>12s} {'true clean':>10s} {'true degr.':>10s} {'wrong cond':>10s} {'noise':>6s}"
    )

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
    per_class = {
        name: round(float(np.mean(oracle.predict(test.images[test.labels == k]) == k)), 3)
        for k, name in enumerate(ds.class_names)
    }
    print(
        f"         per-class oracle accuracy (clean): {per_class}; train counts {ds.class_counts('train')}"
    )
    if args.grids:
        _save(_cls_grid(test.images, test.labels), args.grids / "toy_cls_grid.png")

    ds, gen = _timed(make_toy_seg, seed=args.seed)  # version 1
    oracle, test = ds.oracle, ds.test
    clean, t = _timed(oracle.check, test.images, masks=test.masks)
    degraded_images = degrade(test.images, rng)
    degraded = oracle.check(degraded_images, masks=test.masks)
    other = test.masks[np.roll(np.arange(len(test)), 1)]
    wrong = oracle.check(test.images, masks=other)
    garbage = oracle.check(noise, masks=test.masks[: len(noise)])
    print(
        f"{'toy-seg v1':8s} {gen:6.2f} {t / len(test):12.4f} {clean.mean():10.3f} {degraded.mean():10.3f} {wrong.mean():10.3f} {garbage.mean():6.3f}"
        f"   ({len(ds.train)} train + {len(test)} test)"
    )
    dice_true = oracle.dice(degraded_images, test.masks)
    dice_wrong = oracle.dice(test.images, other)
    print(
        f"         mean Dice true (degraded) min/median {dice_true.min():.3f}/{np.median(dice_true):.3f}; "
        f"wrong max/median {dice_wrong.max():.3f}/{np.median(dice_wrong):.3f}; threshold {oracle.config.threshold}"
    )
    shares = {
        k: round(v / sum(ds.class_counts().values()), 4) for k, v in ds.class_counts().items()
    }
    print(f"         pixel shares (train): {shares}")
    if args.grids:
        _save(_seg_grid(test.images, test.masks), args.grids / "toy_seg_grid.png")
    _toy_seg_v2(args, rng)


def _flatten(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Every foreground region replaced by its mean colour (a generator that paints the class's
    average look)."""
    flat = images.astype(np.float32)
    for image, mask in zip(flat, masks):
        for k in np.unique(mask[mask > 0]):
            image[mask == k] = image[mask == k].mean(axis=0)
    return flat.round().astype(np.uint8)


def _toy_seg_v2(args: argparse.Namespace, rng: np.random.Generator) -> None:
    ds, gen = _timed(make_toy_seg_v2, seed=args.seed)
    oracle, test = ds.oracle, ds.test
    oracle.check(
        test.images[:1], masks=test.masks[:1]
    )  # calibration (once per image size) is not oracle time
    clean, t = _timed(oracle.check, test.images, masks=test.masks)
    noisy = oracle.check(degrade(test.images, rng, blur_sigma=0.0, noise_std=6.0), masks=test.masks)
    blurred = {
        s: oracle.check(
            degrade(test.images, rng, blur_sigma=s, noise_std=0.0), masks=test.masks
        ).mean()
        for s in (0.5, 1.0, 1.5)
    }
    flat = oracle.check(_flatten(test.images, test.masks), masks=test.masks)
    wrong = oracle.check(test.images, masks=test.masks[np.roll(np.arange(len(test)), 1)])
    print(
        f"{'toy-seg v2':10s} gen {gen:.2f} s ({len(ds.train)} + {len(test)}), oracle {t / len(test):.4f} s/img: "
        f"clean {clean.mean():.3f}, noise 6/255 {noisy.mean():.3f}, "
        + ", ".join(f"blur {s} {v:.3f}" for s, v in blurred.items())
        + f", flat regions {flat.mean():.3f}, wrong masks {wrong.mean():.3f}"
    )
    names = ds.class_names
    looks = []
    for cls in range(1, len(names)):
        for look in range(1, len(names)):
            if look == cls:
                continue
            images, masks = draw_scenes(
                60, 64, np.random.default_rng(args.seed + 7), looks={cls: look}
            )
            has = (masks == cls).any(axis=(1, 2))
            looks.append(
                f"{names[cls]}->{names[look]} {oracle.check(images[has], masks=masks[has]).mean():.2f}"
            )
    print("           another class's look (pass rate): " + ", ".join(looks))
    shares = {
        k: round(v / sum(ds.class_counts().values()), 4) for k, v in ds.class_counts().items()
    }
    print(f"           pixel shares (train): {shares}")
    if args.grids:
        _save(_seg_grid(test.images, test.masks), args.grids / "toy_seg_v2_grid.png")


if __name__ == "__main__":
    main()
