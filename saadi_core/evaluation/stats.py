"""Significance of base-vs-aligned differences.

Base and aligned samples are generated from the same seeds, so each evaluation item is a
*paired* pass/fail outcome. The right test is McNemar's on the discordant pairs (fail→pass vs
pass→fail), exact (binomial) because counts are small. A bare difference of pass rates is never
reported without it; METHOD.md measured that ±3–4 points is noise at 320 samples.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

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


def interval_verdict(interval: tuple[float, float] | None, baseline: str = "real-only", unit: str = "seeds") -> str:
    """Wording that never calls a difference whose interval contains 0 an improvement."""
    if interval is None:
        return f"not tested (fewer than 2 {unit})"
    low, high = interval
    if low > 0:
        return f"better than {baseline} (95 % CI above 0)"
    if high < 0:
        return f"worse than {baseline} (95 % CI below 0)"
    return "no significant difference"


def paired_group_bootstrap(
    base: np.ndarray,
    aligned: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile bootstrap interval of ``statistic(aligned) − statistic(base)``, resampling groups.

    ``base`` and ``aligned`` hold one row per group (e.g. per-condition pixel counts), paired row
    by row. Groups, not samples, are resampled because samples of one condition share its layout
    and are not independent; a set-level statistic such as mIoU needs the whole set, so a per-item
    test (McNemar, t) does not apply. The verdict never calls an interval containing 0 a change.
    """
    base, aligned = np.asarray(base), np.asarray(aligned)
    if base.shape != aligned.shape or base.shape[0] < 1:
        raise ValueError(f"paired groups differ or are empty: {base.shape} vs {aligned.shape}")
    rng = np.random.default_rng(seed)
    n = base.shape[0]
    draws = []
    for _ in range(n_resamples):
        rows = rng.integers(0, n, n)
        draws.append(statistic(aligned[rows]) - statistic(base[rows]))
    values = np.asarray(draws, dtype=float)
    values = values[np.isfinite(values)]
    tail = (1 - confidence) / 2 * 100
    interval = (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))) if n >= 2 and values.size else None
    return {
        "base": statistic(base),
        "aligned": statistic(aligned),
        "difference": statistic(aligned) - statistic(base),
        "ci95": list(interval) if interval else None,
        "n_groups": n,
        "verdict": interval_verdict(interval, baseline="base", unit="groups"),
        "method": f"paired bootstrap over {n} groups, {n_resamples} resamples",
    }
