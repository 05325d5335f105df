"""``example-top1``: per condition, the single best sample against the single worst one.

The paper's threshold rule (winner ``s >= h``, loser ``s < h``, same condition) produces every
winner x loser combination; this strategy keeps only the most contrasted pair per condition, so
each condition contributes one pair and no condition dominates the DPO batch. Ties for best or
worst are broken with a ``random.Random(seed)``, so the result depends on ``seed`` and on nothing
else. No torch needed: pairing only looks at scores and condition ids.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from saadi_core.interfaces import Pair, PairingStrategy, PairSet, Sample


class Top1(PairingStrategy):
    """See :class:`saadi_plugin_example.options.Top1Options`."""

    def pairs(self, samples: Sequence[Sample], scores: Sequence[float], seed: int) -> PairSet:
        if len(samples) != len(scores):
            raise ValueError(f"got {len(samples)} samples but {len(scores)} scores")
        h = self.options.threshold
        groups: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            groups.setdefault(sample.condition.id, []).append(i)

        rng = random.Random(seed)
        pairs: list[Pair] = []
        without_winner: list[str] = []
        without_loser: list[str] = []
        for condition_id, members in groups.items():
            best = max(scores[i] for i in members)
            worst = min(scores[i] for i in members)
            winner = rng.choice([i for i in members if scores[i] == best]) if best >= h else None
            loser = rng.choice([i for i in members if scores[i] == worst]) if worst < h else None
            if winner is None:
                without_winner.append(condition_id)
            if loser is None:
                without_loser.append(condition_id)
            if winner is not None and loser is not None:
                pairs.append(
                    Pair(
                        samples[winner], samples[loser], float(scores[winner]), float(scores[loser])
                    )
                )

        stats = {
            "n_pairs": len(pairs),
            "n_conditions": len(groups),
            "conditions_without_winner": without_winner,
            "conditions_without_loser": without_loser,
            "threshold": h,
        }
        return PairSet(pairs=pairs, stats=stats)
