"""``generate-pool``: the generator's samples for every condition, from the pool seed; with
``pool.min_winners`` topped up until each condition has winners and losers (then keyed by the
selector too)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saadi_core.interfaces import Generator, Sample, Selector
from saadi_core.session import RunSession, per_condition
from saadi_core.stages.names import GENERATE_POOL, TRAIN_GENERATOR, TRAIN_SELECTOR
from saadi_core.store import StageResult

NAME = GENERATE_POOL
INPUTS = (TRAIN_GENERATOR, TRAIN_SELECTOR)  # the selector only for the adaptive pool
OUTPUTS = ("samples.pt",)


def params(session: RunSession) -> dict[str, Any]:
    pool = session.config.pool
    fixed = pool.n_per_condition
    out = {
        "n_per_condition": fixed,
        "pool_size": None if fixed else session.sizes["pool_size"],
        "seed": session.pool_seed,
    }
    if pool.min_winners:  # the top-up counts winners at h, so h is part of what it draws
        out |= {
            "min_winners": pool.min_winners,
            "max_per_condition": pool.max_per_condition,
            "threshold": session.threshold(),
        }
    return out


def run(session: RunSession, trained: StageResult, selector_stage: StageResult) -> StageResult:
    pool = session.config.pool

    def compute(out: Path) -> dict[str, Any]:
        from saadi_core import distributed
        from saadi_core.samples_io import save_samples

        generator = session.load_generator(trained)
        conditions = generator.conditions(session.dataset)
        n = pool.n_per_condition or per_condition(session.sizes["pool_size"], len(conditions))
        samples = distributed.sample(generator, conditions, n, session.pool_seed)
        outputs: dict[str, Any] = {"n_conditions": len(conditions), "n_per_condition": n}
        if pool.min_winners:
            extra, outputs["adaptive"] = top_up(
                session, generator, conditions, samples, n, session.load_selector(selector_stage)
            )
            samples = [*samples, *extra]
        save_samples(out, samples)
        return outputs | {"n_samples": len(samples)}

    deps = [trained, selector_stage] if pool.min_winners else [trained]
    slots = ("generator", "selector") if pool.min_winners else ("generator",)
    return session.stage(NAME, params(session), compute, deps, slots=slots)


def top_up(
    session: RunSession,
    generator: Generator,
    conditions: Sequence[Any],
    samples: Sequence[Sample],
    n: int,
    selector: Selector,
) -> tuple[list[Sample], dict[str, Any]]:
    """Adaptive pool (docs/method.md, "rare classes had no winners"): sample more for every
    condition with fewer than ``min_winners`` winners or losers, in rounds of ``n`` per
    condition from fresh seeds, until it has them or reaches the cap."""
    k = session.config.pool.min_winners
    cap = session.config.pool.max_per_condition or 4 * n
    threshold = session.threshold()
    counts = {c.id: [0, 0, 0] for c in conditions}  # samples, winners, losers
    extra: list[Sample] = []

    def count(batch: Sequence[Sample]) -> None:
        for sample, score in zip(batch, selector.score(batch)):
            entry = counts[sample.condition.id]
            entry[0] += 1
            entry[1 if score >= threshold else 2] += 1

    count(samples)
    for round_ in range(1, cap):
        short = [c for c in conditions if min(counts[c.id][1:]) < k and counts[c.id][0] < cap]
        if not short:
            break
        step = min(n, cap - min(counts[c.id][0] for c in short))
        batch = generator.sample(short, step, session.pool_seed + 7919 * round_)
        batch = [s for s in batch if counts[s.condition.id][0] + s.index < cap]
        count(batch)
        extra.extend(batch)
        session.progress.say(
            f"[bold]pool[/]: round {round_}: +{len(batch)} samples for {len(short)} condition(s) short of {k} winners/losers"
        )
    lacking = [c.id for c in conditions if min(counts[c.id][1:]) < k]
    summary = {
        "min_winners": k,
        "cap_per_condition": cap,
        "added": len(extra),
        "per_condition": {
            cid: {"samples": v[0], "winners": v[1], "losers": v[2]} for cid, v in counts.items()
        },
        "still_short": lacking,
    }
    return extra, summary
