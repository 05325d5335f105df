"""``pair``: preferred / non-preferred pairs under the same condition, by the pairing plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saadi_core.session import RunSession
from saadi_core.stages.names import GENERATE_POOL, PAIR, SCORE
from saadi_core.store import StageResult, atomic_write_json

NAME = PAIR
INPUTS = (GENERATE_POOL, SCORE)
OUTPUTS = ("pairs.json",)
SLOTS = ("pairing",)


def params(session: RunSession) -> dict[str, Any]:
    return session.params("pairing") | {"seed": session.config.seed}


def run(session: RunSession, pool: StageResult, scored: StageResult) -> StageResult:
    def compute(out: Path) -> dict[str, Any]:
        from saadi_core.samples_io import load_samples

        samples = load_samples(pool.path)
        scores = session.scores(scored)
        pair_set = session.create("pairing").pairs(samples, scores, seed=session.config.seed)
        index = {id(s): i for i, s in enumerate(samples)}
        atomic_write_json(
            out / "pairs.json",
            {
                "pairs": [[index[id(p.winner)], index[id(p.loser)]] for p in pair_set.pairs],
                "stats": pair_set.stats,
            },
        )
        return {k: v for k, v in pair_set.stats.items() if not isinstance(v, list)} | {
            "conditions_without_winner": len(pair_set.stats.get("conditions_without_winner", [])),
            "conditions_without_loser": len(pair_set.stats.get("conditions_without_loser", [])),
        }

    return session.stage(NAME, params(session), compute, [pool, scored], slots=SLOTS)
