"""Significance of base-vs-aligned differences.

Base and aligned samples are generated from the same seeds, so each evaluation item is a
*paired* pass/fail outcome. The right test is McNemar's on the discordant pairs (fail→pass vs
pass→fail), exact (binomial) because counts are small. A bare difference of pass rates is never
reported without it; METHOD.md measured that ±3–4 points is noise at 320 samples.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import binomtest

ALPHA = 0.05


def mcnemar_exact(base_pass: Sequence[bool], aligned_pass: Sequence[bool]) -> dict[str, Any]:
    """Paired comparison of two pass/fail vectors over the same items.

    Returns pass rates, their difference (aligned − base, in points), the flips and the exact
    two-sided McNemar p-value, and a verdict: ``improved`` / ``worse`` only when p < 0.05,
    otherwise ``no significant difference``.
    """
    base = np.asarray(base_pass, dtype=bool)
    aligned = np.asarray(aligned_pass, dtype=bool)
    if base.shape != aligned.shape:
        raise ValueError(f"paired vectors differ in length: {base.shape} vs {aligned.shape}")
    gained = int(np.sum(~base & aligned))
    lost = int(np.sum(base & ~aligned))
    discordant = gained + lost
    p = 1.0 if discordant == 0 else float(binomtest(min(gained, lost), discordant, 0.5).pvalue)
    diff = float(aligned.mean() - base.mean()) * 100 if base.size else 0.0
    if p < ALPHA and gained > lost:
        verdict = "improved"
    elif p < ALPHA and lost > gained:
        verdict = "worse"
    else:
        verdict = "no significant difference"
    return {
        "n": int(base.size),
        "base_rate": float(base.mean()) if base.size else 0.0,
        "aligned_rate": float(aligned.mean()) if aligned.size else 0.0,
        "difference_points": round(diff, 2),
        "fail_to_pass": gained,
        "pass_to_fail": lost,
        "p_value": p,
        "verdict": verdict,
    }


def paired_interval(differences: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """t confidence interval of the mean of paired differences (e.g. aligned − real per seed);
    ``None`` under two values, where no interval exists."""
    from scipy.stats import t

    values = np.asarray(differences, dtype=float)
    if values.size < 2:
        return None
    half = float(t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return float(values.mean() - half), float(values.mean() + half)


def interval_verdict(interval: tuple[float, float] | None, baseline: str = "real-only") -> str:
    """Wording that never calls a difference whose interval contains 0 an improvement."""
    if interval is None:
        return "not tested (fewer than 2 seeds)"
    low, high = interval
    if low > 0:
        return f"better than {baseline} (95 % CI above 0)"
    if high < 0:
        return f"worse than {baseline} (95 % CI below 0)"
    return "no significant difference"
