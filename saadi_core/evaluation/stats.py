"""Significance of base-vs-aligned differences.

Base and aligned samples are generated from the same seeds, so each evaluation item is a
*paired* pass/fail outcome. The right test is McNemar's on the discordant pairs (fail→pass vs
pass→fail), exact (binomial) because counts are small. A bare difference of pass rates is never
reported without it; docs/method.md (lessons): ±3–4 points is noise at 320 samples.

McNemar treats the samples as independent. Samples of one condition (a segmentation mask) are
not: an adapter that breaks one layout fails its 38 samples together. With the conditions a draw
from many possible ones — masks, layouts — the question is whether the change holds for *other*
conditions, and the condition is the unit: :func:`condition_paired_test` takes each condition's
mean change and a paired t-test over them. On toy-seg a −13.5-point change with McNemar
p = 1e-6 over 608 samples was p = 0.29 over its 16 layouts (docs/benchmarks.md). With fewer than
:data:`MIN_CLUSTERS` conditions (toy-cls: five class prompts, the whole population of
conditions) the conditions are fixed and McNemar over samples is the test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest

ALPHA = 0.05


def paired_verdict(p: float, change: float) -> str:
    """``improved`` / ``worse`` only when ``p`` < :data:`ALPHA`, by the sign of ``change`` (flips
    gained − lost, or a mean change); otherwise ``no significant difference``."""
    if p < ALPHA and change > 0:
        return "improved"
    if p < ALPHA and change < 0:
        return "worse"
    return "no significant difference"


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
    verdict = paired_verdict(p, gained - lost)
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


def paired_interval(
    differences: Sequence[float], confidence: float = 0.95
) -> tuple[float, float] | None:
    """t confidence interval of the mean of paired differences (e.g. aligned − real per seed);
    ``None`` under two values, where no interval exists."""
    from scipy.stats import t

    values = np.asarray(differences, dtype=float)
    if values.size < 2:
        return None
    half = float(
        t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    )
    return float(values.mean() - half), float(values.mean() + half)


def interval_verdict(
    interval: tuple[float, float] | None,
    baseline: str = "real-only",
    unit: str = "seeds",
    higher_is_better: bool = True,
) -> str:
    """Wording that never calls a difference whose interval contains 0 an improvement
    (``higher_is_better=False`` for distances such as FID: a difference above 0 is worse)."""
    if interval is None:
        return f"not tested (fewer than 2 {unit})"
    low, high = interval
    if low > 0:
        return f"{'better' if higher_is_better else 'worse'} than {baseline} (95 % CI above 0)"
    if high < 0:
        return f"{'worse' if higher_is_better else 'better'} than {baseline} (95 % CI below 0)"
    return "no significant difference"


#: with fewer conditions than this, resampling conditions is too coarse (two conditions give three
#: distinct resamples); samples are then resampled within each condition instead
MIN_CLUSTERS = 10

#: what the paired pass-rate tests are (part of the evaluate stage's key: results computed
#: before the condition-level test existed are not reused without it)
PAIRED_TESTS = ("mcnemar", "condition-t")


def condition_paired_test(
    groups: Sequence[Any], base_pass: Sequence[bool], aligned_pass: Sequence[bool]
) -> dict[str, Any] | None:
    """Paired t-test of aligned − base pass rate over conditions: ``groups[i]`` is sample ``i``'s
    condition (the same sample in both variants); each condition contributes the mean of its
    samples' changes (in points), and the t-test and its 95 % interval are taken over those
    means. ``None`` under :data:`MIN_CLUSTERS` conditions (module docstring)."""
    from scipy.stats import ttest_1samp

    base = np.asarray(base_pass, dtype=float)
    aligned = np.asarray(aligned_pass, dtype=float)
    labels = np.asarray([str(g) for g in groups])
    if not (base.shape == aligned.shape == labels.shape):
        raise ValueError(
            f"paired vectors differ in length: {base.shape}, {aligned.shape}, {labels.shape}"
        )
    names = list(dict.fromkeys(labels))
    if len(names) < MIN_CLUSTERS:
        return None
    means = np.array([(aligned - base)[labels == n].mean() * 100 for n in names])
    mean = float(means.mean())
    if np.allclose(means, means[0]):  # every condition moved alike: no spread to test against
        p, interval = (1.0 if mean == 0 else 0.0), (mean, mean)
    else:
        p = float(ttest_1samp(means, 0.0).pvalue)
        interval = paired_interval(means)
        assert interval is not None
    verdict = paired_verdict(p, mean)
    return {
        "n_conditions": len(names),
        "difference_points": round(mean, 2),
        "ci95": [round(interval[0], 2), round(interval[1], 2)],
        "conditions_up": int((means > 0).sum()),
        "conditions_down": int((means < 0).sum()),
        "p_value": p,
        "verdict": verdict,
        "method": f"paired t-test over the {len(names)} conditions' mean changes",
    }


def with_condition_test(block: dict[str, Any], test: dict[str, Any] | None) -> dict[str, Any]:
    """A McNemar block with the condition-level test added; when there is one, it decides the
    block's ``verdict`` (``verdict_test`` says so). Without one the block is McNemar's alone."""
    if test is None:
        return block
    return block | {
        "by_condition": test,
        "verdict": test["verdict"],
        "verdict_test": "conditions",
    }


def paired_bootstrap(
    groups: Sequence[int] | np.ndarray,
    base: Callable[[np.ndarray], float],
    aligned: Callable[[np.ndarray], float],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """Percentile bootstrap interval of ``aligned(items) − base(items)`` for set-level statistics
    (mIoU, FID, KID) of paired samples: item ``i`` is the same seed and condition in both
    variants, ``groups[i]`` its condition, and ``base``/``aligned`` compute the statistic over the
    items whose indices (with repeats) they are given.

    With at least :data:`MIN_CLUSTERS` conditions, whole conditions are resampled — samples of one
    condition share its mask or prompt and are not independent, and the interval then speaks for
    other conditions too. With fewer, samples are resampled within each condition (the conditions
    fixed), since resampling two or five conditions gives a handful of distinct sets. A per-item
    test (McNemar, t) does not apply to a statistic of the whole set. The verdict never calls an
    interval containing 0 a change.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.size < 1:
        raise ValueError("a bootstrap needs at least one item")
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    clustered = len(members) >= MIN_CLUSTERS
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        if clustered:
            rows = np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])
        else:
            rows = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
        draws.append(aligned(rows) - base(rows))
    values = np.asarray(draws, dtype=float)
    values = values[np.isfinite(values)]
    tail = (1 - confidence) / 2 * 100
    interval = (
        (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
        if groups.size >= 2 and values.size
        else None
    )
    everything = np.arange(groups.size)
    base_value, aligned_value = base(everything), aligned(everything)
    unit = (
        f"the {len(members)} conditions"
        if clustered
        else f"samples within each of the {len(members)} conditions"
    )
    return {
        "base": base_value,
        "aligned": aligned_value,
        "difference": aligned_value - base_value,
        "ci95": list(interval) if interval else None,
        "n_groups": len(members),
        "n_items": int(groups.size),
        "higher_is_better": higher_is_better,
        "verdict": interval_verdict(
            interval, baseline="base", unit="samples", higher_is_better=higher_is_better
        ),
        "method": f"paired bootstrap resampling {unit}, {n_resamples} resamples",
    }
