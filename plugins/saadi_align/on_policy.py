"""A preference pool drawn from the generator being aligned, not from the base.

Why: the pipeline's pool comes from the base generator. An aligner that starts from another state
(a later ``iterative`` round, a later ``sequence`` part) learns from pairs that state would not draw
(off-policy), and Diffusion-DPO's loss then pulls it toward the samples of the base. Drawing the
pool from the current generator — scored by the run's selector and paired by the run's strategy,
as the pipeline's pool was — makes the pairs on-policy (RAFT, online DPO).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from saadi_core.interfaces import AlignInputs, Generator, PairSet

#: what an on-policy pool needs from the pipeline's :class:`AlignInputs`
ON_POLICY_NEEDS = ("selector", "pairing", "pool")


def missing_inputs(inputs: AlignInputs, needs: tuple[str, ...] = ON_POLICY_NEEDS) -> list[str]:
    """The fields of ``needs`` that ``inputs`` lacks (empty: all there)."""
    return [name for name in needs if not getattr(inputs, name)]


def pair_counts(pairs: PairSet) -> dict[str, Any]:
    """``pairs.stats`` with its lists (conditions without winner, …) counted, for a meta."""
    return {k: (len(v) if isinstance(v, list) else v) for k, v in pairs.stats.items()}


def draw_pool(
    current: Generator, inputs: AlignInputs, seed: int, per_condition: int | None
) -> tuple[AlignInputs, dict[str, Any]]:
    """``inputs`` with a fresh pool from ``current`` (``per_condition`` samples per training
    condition; None = as many as the pipeline's pool), its selector scores and its pairs, and the
    figures that describe it. A pool without pairs is handed on as it is: aligners that learn
    from per-sample labels (``diffusion-kto``, ``sft-winners``) or from the real images alone need
    none, and Diffusion-DPO says itself that it has no pair."""
    conditions = current.conditions(inputs.dataset)
    n = per_condition or max(1, round(len(inputs.pool) / max(1, len(conditions))))
    pool = current.sample(conditions, n, seed)
    scores = [float(s) for s in inputs.selector.score(pool)]  # type: ignore[union-attr]
    pairs: PairSet = inputs.pairing.pairs(pool, scores, seed=inputs.seed)  # type: ignore[union-attr]
    info = {
        "pool": "on-policy",
        "n_pool": len(pool),
        "pool_seed": seed,
        "mean_pool_score": sum(scores) / len(scores),
        "pair_stats": pair_counts(pairs),
    }
    return replace(inputs, pairs=pairs, pool=pool, scores=scores), info
