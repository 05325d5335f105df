"""``benchmarks/seg_pool.py``'s pair-quality and masks-without-winner figures, on a hand-made pool
whose answers are counted by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from saadi_core.interfaces import Condition, Sample

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seg_pool.py"


def load_script():
    spec = importlib.util.spec_from_file_location("seg_pool_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pool() -> tuple[list[Sample], list[float], np.ndarray, np.ndarray]:
    """Mask a (classes 1, 2): scores 0.95, 0.92, 0.3, 0.2 with oracle pass, fail, pass, fail.
    Mask b (classes 1, 3): every score below 0.9; oracle passes one of two."""
    masks = {"a": torch.tensor([[0, 1], [2, 2]]), "b": torch.tensor([[0, 1], [3, 3]])}
    rows = [
        ("a", 0.95, 1),
        ("a", 0.92, 0),
        ("a", 0.3, 1),
        ("a", 0.2, 0),
        ("b", 0.8, 1),
        ("b", 0.4, 0),
    ]
    samples = [
        Sample(
            torch.zeros(3, 2, 2), Condition(id=f"mask:{m}", mask=masks[m]), "g", 0, i, mask=masks[m]
        )
        for i, (m, _, _) in enumerate(rows)
    ]
    stacked = torch.stack([s.mask for s in samples]).numpy()
    return samples, [r[1] for r in rows], np.array([bool(r[2]) for r in rows]), stacked


def test_pair_quality_counts_the_oracles_verdict_on_every_pair() -> None:
    script = load_script()
    samples, scores, passed, _ = pool()
    # threshold 0.9 within a mask: winners 0.95 (pass) and 0.92 (fail) against 0.3 (pass) and 0.2 (fail)
    quality = script.pair_quality(samples, scores, passed, "threshold:threshold=0.9")
    assert quality["masks_with_pairs"] == 1 and quality["pairs"] == 4
    assert (quality["oracle_agrees"], quality["oracle_contradicts"], quality["oracle_ties"]) == (
        1,
        1,
        2,
    )
    assert quality["agreement_of_decided"] == 0.5
    # best against worst in each mask: a: 0.95 (pass) vs 0.2 (fail); b: 0.8 (pass) vs 0.4 (fail)
    best = script.pair_quality(samples, scores, passed, "best-worst:k=1")
    assert best["masks_with_pairs"] == 2 and best["oracle_agrees"] == 2 and best["pairs"] == 2


def test_masks_without_winner_name_their_scores_and_classes() -> None:
    script = load_script()
    samples, scores, passed, masks = pool()
    groups = {"mask:a": [0, 1, 2, 3], "mask:b": [4, 5]}
    out = script.masks_without_winner(groups, scores, 0.9, passed, masks, ["bg", "x", "y", "tool"])
    assert out == [
        {
            "condition": "mask:b",
            "samples": 2,
            "best_score": 0.8,
            "median_score": 0.6,
            "oracle_pass": 0.5,
            "classes": ["tool", "x"],
        }
    ]


def test_ranking_within_a_mask_counts_every_pass_fail_pair_of_one_condition() -> None:
    script = load_script()
    samples, scores, passed, _ = pool()
    groups = {"mask:a": [0, 1, 2, 3], "mask:b": [4, 5]}
    # a: passing 0.95, 0.3 against failing 0.92, 0.2 -> 3 of 4 ranked right; b: 0.8 over 0.4
    assert script.within_condition_auc(groups, scores, passed) == 4 / 5
    # a tie counts half (a: 4 ties; b still right); a mask with one verdict only adds nothing
    tied = [0.5, 0.5, 0.5, 0.5, 0.9, 0.1]
    assert script.within_condition_auc(groups, tied, passed) == 3 / 5
    assert np.isnan(script.within_condition_auc({"mask:b": [4]}, scores, passed))
