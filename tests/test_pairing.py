"""Pairing strategies: threshold (paper Eq. 3) and best-worst."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from saadi_pairing.options import BestWorstOptions, ThresholdOptions
from saadi_pairing.strategies import BestWorstPairing, ThresholdPairing, allocate

from saadi_core.errors import PipelineError
from saadi_core.interfaces import Condition, PairSet, Sample
from saadi_core.registry import OptionsError, Registry

_IMAGE = torch.zeros(3, 2, 2)


def make_samples(scores_by_condition: dict[str, list[float]]) -> tuple[list[Sample], list[float]]:
    """Samples interleaved across conditions (so grouping, not input order, must do the work)."""
    conditions = {cid: Condition(id=cid, class_id=i) for i, cid in enumerate(scores_by_condition)}
    rows = []
    depth = max(len(v) for v in scores_by_condition.values())
    for j in range(depth):
        for cid, values in scores_by_condition.items():
            if j < len(values):
                rows.append(
                    (
                        Sample(
                            image=_IMAGE,
                            condition=conditions[cid],
                            generator="test",
                            seed=0,
                            index=j,
                        ),
                        values[j],
                    )
                )
    return [s for s, _ in rows], [v for _, v in rows]


def threshold(**options) -> ThresholdPairing:
    return ThresholdPairing(ThresholdOptions(**options))


def best_worst(**options) -> BestWorstPairing:
    return BestWorstPairing(BestWorstOptions(**options))


def as_keys(pair_set: PairSet) -> list[tuple[str, int, int]]:
    return [(p.condition_id, p.winner.index, p.loser.index) for p in pair_set]


def test_threshold_pairs_only_within_a_condition_and_reports_empty_groups():
    samples, scores = make_samples(
        {
            "class:a": [0.9, 0.2, 0.7, 0.1],
            "class:b": [0.8, 0.6],
            "class:c": [0.3, 0.1],
            "class:d": [0.55],
        }
    )
    result = threshold(max_pairs=None).pairs(samples, scores, seed=0)
    assert all(p.winner.condition.id == p.loser.condition.id for p in result)
    assert all(p.winner_score >= 0.5 > p.loser_score for p in result)
    # a: 2 winners x 2 losers; b: no loser; c: no winner; d: single winner
    assert sorted(as_keys(result)) == [
        ("class:a", 0, 1),
        ("class:a", 0, 3),
        ("class:a", 2, 1),
        ("class:a", 2, 3),
    ]
    stats = result.stats
    assert (
        stats["n_pairs"] == 4 and stats["n_conditions"] == 4 and stats["n_conditions_paired"] == 1
    )
    assert stats["conditions_without_winner"] == ["class:c"]
    assert stats["conditions_without_loser"] == ["class:b", "class:d"]
    assert stats["conditions_without_pair"] == ["class:b", "class:c", "class:d"]
    assert stats["n_winners"] == 5 and stats["n_losers"] == 4


def test_threshold_edge_score_equal_to_h_is_a_winner():
    samples, scores = make_samples({"c": [0.5, 0.4999]})
    result = threshold(threshold=0.5).pairs(samples, scores, seed=0)
    assert as_keys(result) == [("c", 0, 1)]
    assert result.pairs[0].winner_score == 0.5


def test_global_scope_is_the_cross_product_across_conditions():
    samples, scores = make_samples({"a": [0.9, 0.8], "b": [0.1, 0.2, 0.3]})
    within = threshold(max_pairs=None).pairs(samples, scores, seed=0)
    across = threshold(scope="global", max_pairs=None).pairs(samples, scores, seed=0)
    assert len(within) == 0 and within.stats["conditions_without_loser"] == ["a"]
    assert len(across) == 6  # 2 winners x 3 losers
    assert {p.winner.condition.id for p in across} == {"a"} and {
        p.loser.condition.id for p in across
    } == {"b"}
    assert across.stats["scope"] == "global"


def test_cap_is_deterministic_for_a_seed_and_fair_across_conditions():
    scores_by_condition = {
        "big": [0.9] * 20 + [0.1] * 20,
        "small": [0.8, 0.7, 0.2, 0.3],
    }  # 400 vs 4 candidates
    samples, scores = make_samples(scores_by_condition)
    one = threshold(max_pairs=50).pairs(samples, scores, seed=7)
    again = threshold(max_pairs=50).pairs(samples, scores, seed=7)
    other = threshold(max_pairs=50).pairs(samples, scores, seed=8)
    assert len(one) == 50 and one.stats["n_candidate_pairs"] == 404
    assert as_keys(one) == as_keys(again)
    assert as_keys(one) != as_keys(other)
    assert len(set(as_keys(one))) == 50  # drawn without replacement
    per_condition = {
        cid: sum(1 for p in one if p.condition_id == cid) for cid in scores_by_condition
    }
    assert per_condition == {"big": 46, "small": 4}  # the small condition keeps all its pairs


def test_max_pairs_per_condition():
    samples, scores = make_samples({"a": [0.9, 0.8, 0.1, 0.2], "b": [0.7, 0.6, 0.3]})
    result = threshold(max_pairs_per_condition=3, max_pairs=None).pairs(samples, scores, seed=0)
    counts = {cid: sum(1 for p in result if p.condition_id == cid) for cid in ("a", "b")}
    assert counts == {"a": 3, "b": 2}


def test_min_gap_drops_close_pairs():
    samples, scores = make_samples({"c": [0.9, 0.55, 0.45, 0.1]})
    result = threshold(min_gap=0.3, max_pairs=None).pairs(samples, scores, seed=0)
    assert sorted(as_keys(result)) == [("c", 0, 2), ("c", 0, 3), ("c", 1, 3)]
    assert all(p.winner_score - p.loser_score >= 0.3 for p in result)
    assert threshold(min_gap=0.95).pairs(samples, scores, seed=0).stats[
        "conditions_without_pair"
    ] == ["c"]


def test_allocate_shares_budget_evenly():
    rng = np.random.default_rng(0)
    # shares of 13, the 3-item group keeps its 3, the 11 left are shared again, 1 unit by lot
    assert allocate([100, 3, 0, 50], 40, rng) in ([19, 3, 0, 18], [18, 3, 0, 19])
    assert allocate([5, 5], None, rng) == [5, 5]
    assert sum(allocate([7, 7, 7], 10, rng)) == 10


def test_large_global_cross_product_is_sampled_without_listing_it():
    n = 6000  # 3000 x 3000 = 9 M candidate pairs
    samples, scores = make_samples({"a": [0.9 if i % 2 else 0.1 for i in range(n)]})
    result = threshold(scope="global", max_pairs=100).pairs(samples, scores, seed=1)
    assert len(result) == 100 and result.stats["n_candidate_pairs"] == (n // 2) ** 2


def test_best_worst_pairs_top_k_with_bottom_k_and_never_ties():
    samples, scores = make_samples(
        {"a": [0.9, 0.5, 0.8, 0.1, 0.3, 0.2], "tied": [0.4, 0.4, 0.4], "lonely": [0.9]}
    )
    result = best_worst(k=2, max_pairs=None).pairs(samples, scores, seed=0)
    # a: top-2 = {0.9 (0), 0.8 (2)}, bottom-2 = {0.1 (3), 0.2 (5)}
    assert sorted(as_keys(result)) == [("a", 0, 3), ("a", 0, 5), ("a", 2, 3), ("a", 2, 5)]
    stats = result.stats
    assert stats["conditions_all_tied"] == ["tied"]
    assert set(stats["conditions_without_pair"]) == {"tied", "lonely"}
    assert stats["conditions_without_winner"] == ["lonely"] and stats[
        "conditions_without_loser"
    ] == ["lonely"]


def test_best_worst_bounds_and_gap():
    samples, scores = make_samples({"bad": [0.3, 0.2, 0.1, 0.05], "good": [0.95, 0.9, 0.6, 0.4]})
    result = best_worst(
        k=2, winner_at_least=0.5, loser_below=0.65, min_gap=0.4, max_pairs=None
    ).pairs(samples, scores, seed=0)
    assert result.stats["conditions_without_winner"] == ["bad"]
    assert result.stats["conditions_without_loser"] == []
    assert sorted(as_keys(result)) == [
        ("good", 0, 3),
        ("good", 1, 3),
    ]  # pairs with 0.6 are closer than 0.4


def test_best_worst_is_deterministic_with_ties_at_the_cut():
    samples, scores = make_samples({"c": [0.7] * 6 + [0.2] * 6})

    def draw(seed: int) -> tuple:
        return tuple(as_keys(best_worst(k=2).pairs(samples, scores, seed=seed)))

    assert draw(3) == draw(3)
    assert len({draw(seed) for seed in range(6)}) > 1  # the seeded shuffle decides who is cut
    assert all(len(draw(seed)) == 4 for seed in range(3))


@pytest.mark.parametrize("strategy", [threshold, best_worst])
def test_invalid_scores_are_clear_errors(strategy):
    samples, scores = make_samples({"c": [0.9, 0.1]})
    with pytest.raises(PipelineError, match="2 samples but 1 scores"):
        strategy().pairs(samples, scores[:1], seed=0)
    with pytest.raises(PipelineError, match="NaN or infinite.*sample 1"):
        strategy().pairs(samples, [0.9, math.nan], seed=0)


@pytest.mark.parametrize("strategy", [threshold, best_worst])
def test_empty_pool_gives_an_empty_pair_set(strategy):
    result = strategy().pairs([], [], seed=0)
    assert (
        len(result) == 0
        and result.stats["n_conditions"] == 0
        and result.stats["conditions_without_winner"] == []
    )


def test_registry_builds_the_strategies_and_validates_options():
    registry = Registry.discover(only=["pairing"])
    assert {"threshold", "best-worst"} <= set(registry.kinds("pairing"))
    pairing = registry.create("pairing", "threshold", {"threshold": 0.7})
    samples, scores = make_samples({"c": [0.7, 0.69]})
    assert len(pairing.pairs(samples, scores, seed=0)) == 1
    with pytest.raises(OptionsError, match="max_pairs_per_condition"):
        registry.create("pairing", "threshold", {"scope": "global", "max_pairs_per_condition": 3})
    with pytest.raises(OptionsError):
        registry.create("pairing", "best-worst", {"k": 0})


def test_plugin_module_is_lazy():
    code = "import saadi_pairing.plugin, sys; assert 'torch' not in sys.modules; assert 'saadi_pairing.strategies' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_strategies_pass_the_core_conformance_checks():
    from saadi_core.conformance import check_pairing

    check_pairing(threshold())
    check_pairing(threshold(scope="global"), allow_cross_condition=True)
    check_pairing(threshold(min_gap=0.3, max_pairs=3), seed=5)
    check_pairing(best_worst(k=2))
    check_pairing(best_worst(winner_at_least=0.5, loser_below=0.5, max_pairs=2), seed=5)


@pytest.mark.parametrize(
    "make", [lambda: threshold(threshold=0.5), lambda: best_worst(k=2, group_by="mask-classes")]
)
def test_mask_classes_grouping_pairs_like_with_like(make):
    """One unconditional condition, two kinds of generated masks: with the hard class (2) present
    the samples score low. Grouped by mask classes, no pair trades the hard class for a score."""
    cond = Condition(id="uncond")
    with_hard = torch.tensor([[0, 1], [2, 2]])
    without = torch.tensor([[0, 1], [1, 1]])
    scores = [0.95, 0.9, 0.3, 0.2, 0.6, 0.7, 0.1, 0.65]
    masks = [without, without, without, without, with_hard, with_hard, with_hard, with_hard]
    samples = [
        Sample(image=_IMAGE, condition=cond, generator="t", seed=0, index=i, mask=m)
        for i, m in enumerate(masks)
    ]
    pairing = make()
    pairing.options = pairing.options.model_copy(update={"group_by": "mask-classes"})
    pair_set = pairing.pairs(samples, scores, seed=0)
    assert len(pair_set) > 0
    for pair in pair_set:
        assert set(pair.winner.mask.unique().tolist()) == set(pair.loser.mask.unique().tolist())
        assert pair.condition_id == "uncond"  # the sub-group never changes the DPO condition
    # grouped by condition only, the threshold rule pairs clean winners with hard-class losers
    ungrouped = make()
    ungrouped.options = ungrouped.options.model_copy(update={"group_by": "condition"})
    assert any(
        2 in p.loser.mask and 2 not in p.winner.mask
        for p in ungrouped.pairs(samples, scores, seed=0)
    )
