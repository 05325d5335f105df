"""``score``: the selector's score of every pool sample, with diagnostics before any pairing (a
blind selector, a threshold that splits nothing, conditions without winners, disagreement with
the oracle on toy data) — the warnings a user needs before trusting the pairs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saadi_core.evaluation.samples import oracle_pass
from saadi_core.interfaces import Sample
from saadi_core.session import RunSession
from saadi_core.stages.names import GENERATE_POOL, SCORE, TRAIN_SELECTOR
from saadi_core.store import StageResult, atomic_write_json

NAME = SCORE
INPUTS = (GENERATE_POOL, TRAIN_SELECTOR)
OUTPUTS = ("scores.json",)
SLOTS = ("selector",)

#: a selector whose pool scores vary less than this is treated as blind (docs/method.md)
NEAR_CONSTANT_STD = 0.02


def run(session: RunSession, pool: StageResult, selector_stage: StageResult) -> StageResult:
    def compute(out: Path) -> dict[str, Any]:
        from saadi_core.samples_io import load_samples

        samples = load_samples(pool.path)
        scores = session.load_selector(selector_stage).score(samples)
        atomic_write_json(out / "scores.json", {"scores": scores})
        return diagnose(session, samples, scores)

    return session.stage(NAME, {}, compute, [pool, selector_stage], slots=SLOTS)


def diagnose(
    session: RunSession, samples: Sequence[Sample], scores: Sequence[float]
) -> dict[str, Any]:
    """Score statistics and warnings before any pairing (a blind selector gives no signal)."""
    import numpy as np

    values = np.asarray(scores, dtype=float)
    h = session.threshold()
    diag: dict[str, Any] = {
        "n": int(values.size),
        # the h these diagnostics were computed at: the stage is keyed by the pool and the
        # selector only, so a later run at another h reuses them as they are
        "h": h,
        "mean": float(values.mean()),
        "std": float(values.std()),
        "share_below_h": float(np.mean(values < h)),
        "warnings": [],
    }
    if values.std() < NEAR_CONSTANT_STD:
        diag["warnings"].append(
            f"selector scores are near-constant (std {values.std():.3f}): it cannot tell good from bad samples; "
            "use a stronger selector or check that classes are not separable by a trivial cue"
        )
    if diag["share_below_h"] < 0.05 or diag["share_below_h"] > 0.95:
        diag["warnings"].append(
            f"{diag['share_below_h']:.0%} of the pool is below h={h}: few pairs; adjust h or the pool size"
        )
    per_condition: dict[str, Any] = {}
    for sample, value in zip(samples, values):
        per_condition.setdefault(sample.condition.id, []).append(float(value))
    for cid, group in list(per_condition.items()):
        arr = np.asarray(group)
        per_condition[cid] = {
            "n": int(arr.size),
            "mean": float(arr.mean()),
            "std": float(arr.std()),
            "winners": int(np.sum(arr >= h)),
            "losers": int(np.sum(arr < h)),
        }
    diag["per_condition"] = per_condition
    one_sided = sorted(
        cid for cid, c in per_condition.items() if not c["winners"] or not c["losers"]
    )
    if one_sided:
        diag["warnings"].append(
            f"{len(one_sided)} of {len(per_condition)} condition(s) have no winner or no loser "
            f"(e.g. {one_sided[0]}): they give no pairs; enlarge the pool or use the adaptive pool (pool.min_winners)"
        )
    oracle = oracle_pass(session.dataset, samples)
    if oracle is not None:
        selector_pass = values >= h
        truth = np.asarray(oracle, dtype=bool)
        diag["oracle_pass"] = float(np.mean(truth))
        diag["selector_oracle_agreement"] = float(np.mean(selector_pass == truth))
        diag["selector_oracle_kappa"] = cohen_kappa(selector_pass, truth)
        if diag["selector_oracle_kappa"] < 0.2:
            diag["warnings"].append(
                f"the selector barely agrees with the oracle on the pool (Cohen's kappa {diag['selector_oracle_kappa']:.2f}): "
                "its preferences may not be what the images really show; alignment can then drift without helping"
            )
    for warning in diag["warnings"]:
        session.warn(warning)
    return diag


def cohen_kappa(a: Any, b: Any) -> float:
    """Cohen's kappa of two boolean vectors: agreement beyond what their pass rates give by chance
    (accuracy alone looks high when both say "pass" to almost everything)."""
    import numpy as np

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    observed = float(np.mean(a == b))
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return 0.0 if chance >= 1.0 else (observed - chance) / (1.0 - chance)
