"""Pairing strategies: scored samples in, preference pairs (and an account of what could not be
paired) out. NumPy only — pairing needs no torch.

Common rules of both strategies:

* **Within one condition** by default: Diffusion-DPO conditions winner and loser on the same
  prompt or mask, so a pair across conditions teaches nothing about that condition. Conditions
  are grouped by ``sample.condition.id`` (and, with ``group_by: mask-classes``, by the set of
  classes in the sample's own mask).
* **Ties never pair**: a pair needs ``s_w > s_l`` and ``s_w − s_l ≥ min_gap``. The threshold rule
  guarantees the strict inequality (``s_w ≥ h > s_l``); in best-worst, a condition whose scores
  are all equal yields nothing and is listed in ``conditions_all_tied``.
* **Capping is seeded and fair**: when the eligible pairs exceed ``max_pairs``, the budget is
  shared evenly across conditions (conditions with fewer pairs keep all theirs, the rest is
  redistributed; leftover units go to randomly chosen conditions), then each condition's pairs
  are drawn uniformly without replacement. A rare class is thus not crowded out by a frequent
  one, and the same seed always gives the same pairs. Eligible pairs are counted and drawn
  without listing them all, so the paper's global cross product of a large pool stays cheap.
* **Output order**: conditions in order of first appearance; within one, by winner position,
  then by loser score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from saadi_core.errors import PipelineError
from saadi_core.interfaces import Pair, PairingStrategy, PairSet, Sample


def validate_scores(samples: Sequence[Sample], scores: Sequence[float]) -> np.ndarray:
    """Scores as a float array, or a clear error when they cannot be paired on."""
    if len(samples) != len(scores):
        raise PipelineError(
            f"pairing got {len(samples)} samples but {len(scores)} scores; they must correspond one to one"
        )
    values = np.asarray(list(scores), dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise PipelineError(
            f"{bad.size} selector score(s) are NaN or infinite (first at sample {int(bad[0])}, condition "
            f"'{samples[int(bad[0])].condition.id}'); the selector produced invalid scores"
        )
    return values


def group_key(sample: Sample, by: str = "condition") -> str:
    """The pairing group of a sample: its condition, or its condition and the set of classes its
    own mask holds (``by="mask-classes"``). A joint image+mask generator picks its mask itself; a
    Dice score is easier to earn without small, hard classes, so pairs across class sets teach it
    to leave those classes out — within one class set they compare like with like."""
    if by == "condition" or sample.mask is None:
        return sample.condition.id
    present = np.unique(
        np.asarray(sample.mask.detach().cpu() if hasattr(sample.mask, "detach") else sample.mask)
    )
    return f"{sample.condition.id}|classes={','.join(str(int(c)) for c in present)}"


def group_by_condition(samples: Sequence[Sample], by: str = "condition") -> dict[str, np.ndarray]:
    """Sample positions per pairing group (see :func:`group_key`), in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(group_key(sample, by), []).append(i)
    return {cid: np.asarray(idx, dtype=np.int64) for cid, idx in groups.items()}


@dataclass
class Candidates:
    """The eligible pairs between ``winners`` and ``losers`` (sample positions) of one group:
    ``s_w > s_l`` and ``s_w − s_l ≥ gap``. For each winner the eligible losers are a prefix of the
    losers sorted by score, so the set is described by one count per winner."""

    winners: np.ndarray
    losers: np.ndarray  # sorted by ascending score
    counts: np.ndarray  # eligible losers per winner

    @classmethod
    def build(
        cls, winners: np.ndarray, losers: np.ndarray, scores: np.ndarray, gap: float
    ) -> Candidates:
        losers = losers[np.argsort(scores[losers], kind="stable")]
        loser_scores = scores[losers]
        if gap > 0:
            counts = np.searchsorted(loser_scores, scores[winners] - gap, side="right")
        else:  # strictly lower scores only: equal scores are a tie, not a preference
            counts = np.searchsorted(loser_scores, scores[winners], side="left")
        return cls(winners=winners, losers=losers, counts=counts.astype(np.int64))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def draw(self, m: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        """``m`` distinct eligible pairs, uniformly (all of them if ``m ≥ total``)."""
        total = self.total
        if m <= 0 or total == 0:
            return []
        flat = np.arange(total) if m >= total else np.sort(rng.choice(total, size=m, replace=False))
        ends = np.cumsum(self.counts)
        w = np.searchsorted(ends, flat, side="right")
        offset = flat - (ends[w] - self.counts[w])
        return [(int(self.winners[a]), int(self.losers[b])) for a, b in zip(w, offset)]


def allocate(totals: Sequence[int], budget: int | None, rng: np.random.Generator) -> list[int]:
    """Split ``budget`` over groups holding ``totals`` items: an even share each, groups with
    fewer items keep all theirs and the remainder is shared again; units that cannot be split
    evenly go to randomly chosen groups."""
    alloc = [0] * len(totals)
    if budget is None or budget >= sum(totals):
        return list(totals)
    remaining = budget
    active = [g for g, t in enumerate(totals) if t > 0]
    while remaining > 0 and active:
        share = remaining // len(active)
        if share == 0:
            for g in rng.choice(active, size=remaining, replace=False):
                alloc[int(g)] += 1
            break
        for g in active:
            give = min(share, totals[g] - alloc[g])
            alloc[g] += give
            remaining -= give
        active = [g for g in active if alloc[g] < totals[g]]
    return alloc


def select_pairs(
    samples: Sequence[Sample],
    scores: np.ndarray,
    groups: list[Candidates],
    per_group_cap: int | None,
    max_pairs: int | None,
    rng: np.random.Generator,
) -> list[Pair]:
    """Apply the per-group cap, share ``max_pairs`` fairly and draw the pairs of every group."""
    totals = [g.total if per_group_cap is None else min(g.total, per_group_cap) for g in groups]
    quota = allocate(totals, max_pairs, rng)
    pairs: list[Pair] = []
    for group, m in zip(groups, quota):
        for w, l in group.draw(m, rng):
            pairs.append(
                Pair(
                    winner=samples[w],
                    loser=samples[l],
                    winner_score=float(scores[w]),
                    loser_score=float(scores[l]),
                )
            )
    return pairs


def base_stats(
    strategy: str,
    samples: Sequence[Sample],
    conditions: dict[str, np.ndarray],
    pairs: list[Pair],
    without_winner: list[str],
    without_loser: list[str],
    without_pair: list[str],
    n_winners: int,
    n_losers: int,
    n_candidates: int,
) -> dict[str, Any]:
    """The statistics every strategy reports (see :class:`saadi_core.interfaces.PairSet`)."""
    gaps = [p.winner_score - p.loser_score for p in pairs]
    return {
        "strategy": strategy,
        "n_samples": len(samples),
        "n_conditions": len(conditions),
        "n_pairs": len(pairs),
        "n_candidate_pairs": n_candidates,
        "n_conditions_paired": len({p.condition_id for p in pairs}),
        "n_winners": n_winners,
        "n_losers": n_losers,
        "mean_gap": float(np.mean(gaps)) if gaps else None,
        "conditions_without_winner": without_winner,
        "conditions_without_loser": without_loser,
        "conditions_without_pair": without_pair,
    }


class ThresholdPairing(PairingStrategy):
    """Paper Eq. 3: winners score ``s ≥ h``, losers ``s < h`` (a score exactly ``h`` wins).

    ``scope: condition`` (default) pairs winners and losers of the same condition;
    ``scope: global`` pairs every winner with every loser (the paper's cross product), a pair then
    being conditioned on the winner's condition. Empty groups are reported per condition in both
    scopes.
    """

    kind = "threshold"

    def pairs(self, samples: Sequence[Sample], scores: Sequence[float], seed: int) -> PairSet:
        values = validate_scores(samples, scores)
        o = self.options
        rng = np.random.default_rng(seed)
        conditions = group_by_condition(samples, o.group_by)
        wins = values >= o.threshold
        without_winner = [cid for cid, idx in conditions.items() if not wins[idx].any()]
        without_loser = [cid for cid, idx in conditions.items() if wins[idx].all()]
        per_condition = {
            cid: Candidates.build(idx[wins[idx]], idx[~wins[idx]], values, o.min_gap)
            for cid, idx in conditions.items()
        }
        without_pair = [cid for cid, c in per_condition.items() if c.total == 0]
        if o.scope == "condition":
            groups = list(per_condition.values())
        else:
            everyone = np.arange(len(samples))
            groups = [Candidates.build(everyone[wins], everyone[~wins], values, o.min_gap)]
        chosen = select_pairs(samples, values, groups, o.max_pairs_per_condition, o.max_pairs, rng)
        stats = base_stats(
            "threshold",
            samples,
            conditions,
            chosen,
            without_winner,
            without_loser,
            without_pair,
            n_winners=int(wins.sum()),
            n_losers=int((~wins).sum()),
            n_candidates=sum(g.total for g in groups),
        )
        stats.update(
            threshold=o.threshold,
            scope=o.scope,
            min_gap=o.min_gap,
            max_pairs=o.max_pairs,
            seed=seed,
        )
        return PairSet(pairs=chosen, stats=stats)


class BestWorstPairing(PairingStrategy):
    """Per condition, the ``k`` highest-scoring samples against the ``k`` lowest.

    ``k`` is limited to half the condition's samples so the two sets are disjoint; equal scores at
    the cut are broken by a seeded shuffle. Optional absolute bounds (``winner_at_least``,
    ``loser_below``) keep a condition where everything is bad from producing "bad vs worse" pairs.
    A condition with fewer than two samples has neither winner nor loser.
    """

    kind = "best-worst"

    def pairs(self, samples: Sequence[Sample], scores: Sequence[float], seed: int) -> PairSet:
        values = validate_scores(samples, scores)
        o = self.options
        rng = np.random.default_rng(seed)
        conditions = group_by_condition(samples, o.group_by)
        groups: list[Candidates] = []
        without_winner: list[str] = []
        without_loser: list[str] = []
        all_tied: list[str] = []
        n_winners = n_losers = 0
        for cid, idx in conditions.items():
            k = min(o.k, len(idx) // 2)
            shuffled = idx[rng.permutation(len(idx))]
            ranked = shuffled[np.argsort(-values[shuffled], kind="stable")]
            top, bottom = ranked[:k], ranked[len(ranked) - k :]
            if o.winner_at_least is not None:
                top = top[values[top] >= o.winner_at_least]
            if o.loser_below is not None:
                bottom = bottom[values[bottom] < o.loser_below]
            if top.size == 0:
                without_winner.append(cid)
            if bottom.size == 0:
                without_loser.append(cid)
            if len(idx) >= 2 and np.all(values[idx] == values[idx[0]]):
                all_tied.append(cid)
            n_winners += int(top.size)
            n_losers += int(bottom.size)
            groups.append(Candidates.build(top, bottom, values, o.min_gap))
        without_pair = [cid for cid, g in zip(conditions, groups) if g.total == 0]
        chosen = select_pairs(samples, values, groups, o.max_pairs_per_condition, o.max_pairs, rng)
        stats = base_stats(
            "best-worst",
            samples,
            conditions,
            chosen,
            without_winner,
            without_loser,
            without_pair,
            n_winners=n_winners,
            n_losers=n_losers,
            n_candidates=sum(g.total for g in groups),
        )
        stats.update(
            k=o.k, min_gap=o.min_gap, max_pairs=o.max_pairs, conditions_all_tied=all_tied, seed=seed
        )
        return PairSet(pairs=chosen, stats=stats)


class PreferencePairing(PairingStrategy):
    """Pairs from a file of preferences rated outside saadi (people, another model, another study).

    The selector's scores are kept on each pair for diagnostics but decide nothing; the file does
    (see :mod:`saadi_core.preferences` for the format and the export/rate/import workflow)."""

    kind = "preferences"

    def pairs(self, samples: Sequence[Sample], scores: Sequence[float], seed: int) -> PairSet:
        from saadi_core.preferences import read_preferences

        values = validate_scores(samples, scores)
        chosen = read_preferences(self.options.file, samples)
        conditions = list(dict.fromkeys(s.condition.id for s in samples))
        paired = {samples[w].condition.id for w, _ in chosen}
        pairs = [
            Pair(samples[w], samples[l], float(values[w]), float(values[l])) for w, l in chosen
        ]
        agree = sum(p.winner_score > p.loser_score for p in pairs)
        return PairSet(
            pairs,
            {
                "strategy": self.kind,
                "source": str(self.options.file),
                "n_pairs": len(pairs),
                "n_conditions": len(conditions),
                "n_conditions_paired": len(paired),
                "conditions_without_winner": [c for c in conditions if c not in paired],
                "conditions_without_loser": [c for c in conditions if c not in paired],
                # how often the selector would have agreed with the file
                "selector_agreement": agree / len(pairs) if pairs else None,
            },
        )
