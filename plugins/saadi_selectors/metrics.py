"""Test-split evaluation of a selector (or any downstream model) with the core's metric
definitions, so numbers reported here and by the pipeline's stages are the same numbers.

Classification: accuracy, per-class F1 and macro F1 over the classes present in the split.
Segmentation: per-class Dice accumulated over all pixels of the split and mean Dice over the
foreground classes present (background reported per class but not in the mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from saadi_core.data.dataset import Split
from saadi_core.errors import DataError
from saadi_core.evaluation.metrics import dice_scores, f1_scores
from saadi_core.interfaces import Selector


def predict_split(selector: Selector, split: Split, batch_size: int = 64) -> np.ndarray:
    """The selector's predictions for every image of ``split`` (batched), as a NumPy array."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            out.append(
                selector.predict(split.image_tensor(slice(start, start + batch_size))).cpu().numpy()
            )
    return np.concatenate(out) if out else np.empty((0,), dtype=np.int64)


def evaluate(
    selector: Selector, split: Split, class_names: Sequence[str], batch_size: int = 64
) -> dict[str, Any]:
    """Metrics of ``selector`` on ``split``.

    Returns ``{"task", "n", "accuracy", "macro_f1", "per_class_f1"}`` for a classification selector
    and ``{"task", "n", "mean_dice", "per_class_dice"}`` for a segmentation one (per-class values
    keyed by class name).
    """
    task = getattr(selector, "task", "classification")
    truth = split.labels if task == "classification" else split.masks
    if truth is None:
        raise DataError(
            f"split has no {'labels' if task == 'classification' else 'masks'} to evaluate a {task} selector on"
        )
    pred = predict_split(selector, split, batch_size)
    metrics = (
        f1_scores(pred, truth, class_names)
        if task == "classification"
        else dice_scores(pred, truth, class_names)
    )
    return {"task": task, "n": len(split), **metrics}
