"""How results are worded: only a significant difference is called a change.

docs/method.md records that a few points of pass rate are noise at a few hundred samples, so the
report never lets a bare difference read as an improvement: paired pass rates are worded from the
exact McNemar test, study comparisons from their 95 % confidence interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ALPHA = 0.05


#: the wording of a condition-level test's verdict
_OVER_CONDITIONS = {
    "improved": ("significant improvement (over conditions)", "good"),
    "worse": ("significantly worse (over conditions)", "bad"),
}


def mcnemar_reading(block: dict[str, Any]) -> tuple[str, str]:
    """``(wording, tone)`` of a McNemar block (``p_value``, ``fail_to_pass``, ``pass_to_fail``),
    or of its condition-level test when it has one (``by_condition``: it then decides)."""
    by_condition = block.get("by_condition")
    if by_condition:  # its verdict is already decided (saadi_core.evaluation.stats)
        return _OVER_CONDITIONS.get(
            by_condition.get("verdict"), ("no significant change (over conditions)", "neutral")
        )
    p = block.get("p_value")
    if p is None:
        return "not tested", "neutral"
    gained, lost = block.get("fail_to_pass", 0), block.get("pass_to_fail", 0)
    if p < ALPHA and gained > lost:
        return "significant improvement", "good"
    if p < ALPHA and lost > gained:
        return "significantly worse", "bad"
    return "no significant change", "neutral"


def ci_reading(difference: float | None, ci95: Sequence[float] | None) -> tuple[str, str]:
    """``(wording, tone)`` of a difference with its 95 % CI: a CI containing 0 is never an
    improvement, whatever the sign of the point estimate."""
    if difference is None or not ci95 or len(ci95) != 2 or any(v is None for v in ci95):
        return "no confidence interval (too few seeds)", "neutral"
    lo, hi = float(ci95[0]), float(ci95[1])
    if lo > 0:
        return "improvement (CI excludes 0)", "good"
    if hi < 0:
        return "worse (CI excludes 0)", "bad"
    return "no significant difference", "neutral"
