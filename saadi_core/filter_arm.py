"""The ``filter`` baseline of a study: keep only the synthetic samples the selector likes.

The obvious, cheaper alternative to aligning a generator is to sample it, score the samples with
the selector and keep those scoring ≥ h. A study arm with ``filter: true`` does that to its
generator (base, or aligned with ``aligner`` set: "aligned + filter") and hands the kept samples to
the downstream model like any other arm — so alignment is compared with filtering at the SAME
synthetic count per condition (class prompt or mask):

* the candidates start with the arm's own held-out samples (the same seeds as the base/aligned
  arm), then further rounds of ``n`` per condition from fresh seeds for conditions short of ``n``
  passing samples, up to ``max_factor × n`` candidates per condition;
* per condition the first ``n`` passing candidates are kept; a condition that never reaches ``n``
  is topped up with its best-scoring failing candidates, and the share of top-ups is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from saadi_core.interfaces import Generator, Sample, Selector

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.session import RunSession
    from saadi_core.store import StageResult

#: extra candidate rounds draw with seed ``evaluation seed + FILTER_SEED_OFFSET + round``
FILTER_SEED_OFFSET = 30_000
#: candidates per condition at most, as a multiple of the kept count
MAX_FACTOR = 4


def filter_samples(
    generator: Generator,
    candidates: Sequence[Sample],
    selector: Selector,
    threshold: float,
    seed: int,
    max_factor: int = MAX_FACTOR,
) -> tuple[list[Sample], dict[str, Any]]:
    """``n`` samples per condition (``n`` = the candidates' count per condition) scoring ≥ h where
    possible (module docstring); returns them and a report."""
    by_condition: dict[str, list[tuple[Sample, float]]] = {}
    conditions = {}
    for sample, score in zip(candidates, selector.score(candidates)):
        by_condition.setdefault(sample.condition.id, []).append((sample, float(score)))
        conditions.setdefault(sample.condition.id, sample.condition)
    n = {cid: len(group) for cid, group in by_condition.items()}

    def passing(cid: str) -> int:
        return sum(score >= threshold for _, score in by_condition[cid])

    for round_ in range(1, max_factor):
        short = [cid for cid in by_condition if passing(cid) < n[cid]]
        if not short:
            break
        # one call per round for all short conditions at the largest count they need
        extra = generator.sample(
            [conditions[c] for c in short],
            max(n[c] for c in short),
            seed + FILTER_SEED_OFFSET + round_,
        )
        extra = [
            s for s in extra if len(by_condition[s.condition.id]) < max_factor * n[s.condition.id]
        ]
        for sample, score in zip(extra, selector.score(extra)):
            by_condition[sample.condition.id].append((sample, float(score)))

    kept: list[Sample] = []
    topped_up: dict[str, int] = {}
    for cid, group in by_condition.items():
        good = [s for s, score in group if score >= threshold][: n[cid]]
        if len(good) < n[cid]:
            worse = sorted(
                (pair for pair in group if pair[1] < threshold), key=lambda pair: -pair[1]
            )
            topped_up[cid] = n[cid] - len(good)
            good += [s for s, _ in worse[: topped_up[cid]]]
        kept.extend(good)
    total = sum(n.values())
    report = {
        "n_samples": len(kept),
        "n_candidates": sum(len(g) for g in by_condition.values()),
        "threshold": threshold,
        "candidate_pass_rate": sum(passing(c) for c in by_condition)
        / max(1, sum(len(g) for g in by_condition.values())),
        "topped_up": sum(topped_up.values()),
        "topped_up_share": sum(topped_up.values()) / max(1, total),
        "conditions_topped_up": sorted(topped_up),
    }
    return kept, report


def stage_filter(
    session: RunSession,
    label: str,
    source: StageResult,
    trained: StageResult,
    selector_stage: StageResult,
    aligned: StageResult | None = None,
) -> StageResult:
    """The filtered synthetic set of one run as a cached stage ``sample-<label>``: the candidates
    are the run's base (or aligned) held-out samples ``source``, topped up from the same generator."""
    from saadi_core.stages.names import sample_stage

    threshold = session.threshold()
    seed = session.eval_seed

    def compute(out: Any) -> dict[str, Any]:
        from saadi_core.samples_io import load_samples, save_samples

        generator = (
            session.load_generator(trained)
            if aligned is None
            else session.aligned_generator(trained, aligned)
        )
        kept, report = filter_samples(
            generator,
            load_samples(source.path),
            session.load_selector(selector_stage),
            threshold,
            seed,
        )
        save_samples(out, kept)
        session.progress.say(
            f"[bold]filter[/]: kept {report['n_samples']} of {report['n_candidates']} candidates "
            f"({report['topped_up']} topped up below h={threshold})"
        )
        return report

    params = {"threshold": threshold, "seed": seed, "max_factor": MAX_FACTOR}
    deps = [source, trained, selector_stage, *([aligned] if aligned is not None else [])]
    slots = ("generator", "selector") if aligned is None else ("generator", "aligner", "selector")
    return session.stage(sample_stage(label), params, compute, deps, slots=slots)


def run_filter_arm(
    session: RunSession, label: str, aligned_arm: bool
) -> tuple[dict[str, Any], StageResult]:
    """After the arm's ordinary run (all its stages cached): filter its samples, evaluate them
    (selector/oracle pass and what the evaluation plugins add, fidelity) and train the downstream
    models on real + filtered. Writes and returns the arm's summary, and the filtered samples stage."""
    from saadi_core.generation import generate
    from saadi_core.locks import lock_run
    from saadi_core.run_summary import final_entries
    from saadi_core.stages import downstream, evaluate, fidelity
    from saadi_core.store import atomic_write_json

    lock_run(session.store.root)  # the ordinary run gave it back when it finished
    try:
        sets = generate(session, aligned=aligned_arm)
        selector_stage = sets.selector
        source = sets.samples["aligned" if aligned_arm else "base"]
        filtered = stage_filter(session, label, source, sets.trained, selector_stage, sets.aligned)
        evaluate.run(session, {label: filtered}, selector_stage)
        if session.config.fidelity.metrics != []:
            fidelity.run_all(session, {label: filtered}, selector_stage)
        trained_downstream = downstream.run_all(
            session, sets.real, {label: [filtered]}, selector_stage
        )
        summary: dict[str, Any] = {
            "run": str(session.store.root),
            "task": session.dataset.task,
            "filter": filtered.outputs,
        }
        summary |= final_entries(session, [label], summary, trained_downstream)
        atomic_write_json(session.store.root / "summary.json", summary)
    finally:
        session.store.release()
    return summary, filtered
