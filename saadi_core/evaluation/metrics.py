"""Downstream task metrics computed in the core (plugins' predictions in, numbers out).

The core owns these so every selector/downstream plugin is evaluated by the same definitions:
per-class and macro F1 for classification, per-class Dice for segmentation (mean over the
foreground classes, background reported separately, as surgical segmentation papers do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def f1_scores(pred: np.ndarray, true: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class F1 (0 where a class is neither predicted nor present: it counts against the
    macro mean only if it is present in ``true``), macro F1 over classes present, accuracy."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    per_class: dict[str, float] = {}
    present = []
    for c, name in enumerate(class_names):
        tp = float(np.sum((pred == c) & (true == c)))
        fp = float(np.sum((pred == c) & (true != c)))
        fn = float(np.sum((pred != c) & (true == c)))
        denom = 2 * tp + fp + fn
        per_class[name] = 2 * tp / denom if denom else 0.0
        if np.any(true == c):
            present.append(per_class[name])
    return {
        "macro_f1": float(np.mean(present)) if present else 0.0,
        "accuracy": float(np.mean(pred == true)) if true.size else 0.0,
        "per_class_f1": per_class,
    }


def dice_scores(pred: np.ndarray, true: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class Dice accumulated over the whole split (pixels of all images), mean Dice over the
    foreground classes (ids ≥ 1) present in ``true``."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    per_class: dict[str, float] = {}
    foreground = []
    for c, name in enumerate(class_names):
        p, t = pred == c, true == c
        denom = float(p.sum() + t.sum())
        per_class[name] = 2.0 * float((p & t).sum()) / denom if denom else 0.0
        if c >= 1 and t.any():
            foreground.append(per_class[name])
    return {
        "mean_dice": float(np.mean(foreground)) if foreground else 0.0,
        "per_class_dice": per_class,
    }


def class_presence(
    masks: Sequence[np.ndarray] | np.ndarray, class_names: Sequence[str]
) -> dict[str, float]:
    """Share of masks that hold each class (at least one pixel)."""
    present = np.asarray(
        [[np.any(np.asarray(m) == c) for c in range(len(class_names))] for m in masks], dtype=bool
    )
    return {
        name: float(present[:, c].mean()) if len(present) else 0.0
        for c, name in enumerate(class_names)
    }


def presence_drops(presence: dict[str, dict[str, float]], min_drop: float = 0.1) -> list[str]:
    """Warnings for classes that appear in at least ``min_drop`` fewer aligned than base samples.

    A Dice-scored selector rewards a generator that draws its own mask (SimGen-style) for leaving
    small, hard classes out: pass rates rise while content disappears, and the oracle, which
    checks image against mask, cannot see it."""
    if "base" not in presence or "aligned" not in presence:
        return []
    warnings = []
    for name, base in presence["base"].items():
        aligned = presence["aligned"][name]
        if base - aligned >= min_drop:
            real = presence.get("real", {}).get(name)
            real_text = f", {real:.0%} of real masks" if real is not None else ""
            warnings.append(
                f"class '{name}' appears in {aligned:.0%} of aligned samples vs {base:.0%} of base{real_text}: alignment may "
                "be trading content for score; pair within mask class sets (pairing.options.group_by=mask-classes)"
            )
    return warnings


def iou_counts(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class pixel counts ``(3, K)`` of predictions against labels: intersection, union and
    label pixels. Counts, not ratios, so sets can be summed (and resampled) before dividing."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    counts = np.zeros((3, num_classes), dtype=np.int64)
    for c in range(num_classes):
        p, t = pred == c, true == c
        counts[:, c] = (int((p & t).sum()), int((p | t).sum()), int(t.sum()))
    return counts


def mean_iou(counts: np.ndarray, exclude: Sequence[int] = ()) -> tuple[float, dict[int, float]]:
    """mIoU of summed :func:`iou_counts` (any leading axes are summed) over the classes the labels
    show, minus ``exclude``: a class absent from every label neither counts as perfect nor as
    failed. Returns the mean and the per-class IoU; the mean is NaN when no class is left."""
    total = np.asarray(counts).reshape(-1, 3, np.asarray(counts).shape[-1]).sum(axis=0)
    per_class = {
        c: float(total[0, c] / total[1, c])
        for c in range(total.shape[1])
        if total[2, c] > 0 and c not in exclude
    }
    return (float(np.mean(list(per_class.values()))) if per_class else float("nan")), per_class
