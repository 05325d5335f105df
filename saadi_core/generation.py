"""The stage chain from the real data to the held-out sample sets, shared by every entry point.

``saadi run`` (:mod:`saadi_core.pipeline`), a study's filter arm (:mod:`saadi_core.filter_arm`)
and the benchmark scripts that reopen a finished run all walk the same stages in the same order;
one definition keeps them from drifting apart (a stage called with other inputs would get another
cache key and be recomputed instead of reused)."""

from __future__ import annotations

from dataclasses import dataclass, field

from saadi_core.session import RunSession
from saadi_core.stages import align, data, pair, pool, sample, score, train
from saadi_core.store import StageResult


@dataclass
class GeneratedSets:
    """The stages up to the held-out samples; the alignment fields are ``None`` without one."""

    real: StageResult
    trained: StageResult
    selector: StageResult
    #: held-out sample stages by variant: "base", and "aligned" when the run aligns
    samples: dict[str, StageResult] = field(default_factory=dict)
    scored: StageResult | None = None
    paired: StageResult | None = None
    aligned: StageResult | None = None


def generate(session: RunSession, aligned: bool) -> GeneratedSets:
    """Train the generator and the selector, sample the base set and, with ``aligned``, generate
    the pool, score it, pair it, align the generator and sample the aligned set (Stages 1-3 of
    the method; each stage cached in the session's store)."""
    real = data.run(session)
    trained = train.run_generator(session, real)
    selector = train.run_selector(session, real)
    sets = GeneratedSets(real, trained, selector, {"base": sample.run(session, "base", trained)})
    if aligned:
        pooled = pool.run(session, trained, selector)
        sets.scored = score.run(session, pooled, selector)
        sets.paired = pair.run(session, pooled, sets.scored)
        sets.aligned = align.run(session, trained, pooled, sets.scored, sets.paired, selector)
        sets.samples["aligned"] = sample.run(session, "aligned", trained, sets.aligned)
    return sets
