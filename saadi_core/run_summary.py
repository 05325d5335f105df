"""``summary.json``: the figures of a finished run — the core's entries, then what the lifecycle
plugins contribute (``saadi_summary_entries``: pass rates, label preservation, class presence,
fidelity and any third-party metric)."""

from __future__ import annotations

from typing import Any

from saadi_core.lifecycle import RunOutputs, summary_entries
from saadi_core.session import RunSession
from saadi_core.stages.downstream import aggregate
from saadi_core.stages.names import EVALUATE, SCORE, sample_stage
from saadi_core.store import StageResult


def alignment_entries(
    scored: StageResult, paired: StageResult, aligned: StageResult
) -> dict[str, Any]:
    """What the alignment stages report: score diagnostics, pair statistics, DPO's last accuracy."""
    return {
        "score_diagnostics": scored.outputs,
        "pairs": paired.outputs,
        "dpo_implicit_accuracy": aligned.outputs.get("implicit_accuracy"),
        "alignment": aligned.outputs.get("meta"),
    }


def final_entries(
    session: RunSession,
    variants: list[str],
    summary: dict[str, Any],
    downstream: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Warnings, downstream and stage times, then every plugin's summary entries."""
    results = session.results
    warnings = [*results[SCORE].outputs.get("warnings", [])] if SCORE in results else []
    base_samples = results.get(sample_stage("base"))
    core = {
        # what the evaluation samples were generated on (saadi_core.evaluation.conditions)
        "evaluation_conditions": None
        if base_samples is None
        else base_samples.outputs.get("conditions", "training"),
        "warnings": [*warnings, *results[EVALUATE].outputs.get("warnings", [])],
        "downstream": aggregate(downstream, session.dataset.task),
        "timings_s": {
            name: s.get("seconds") for name, s in session.store.manifest.get("stages", {}).items()
        },
    }
    run = RunOutputs(
        root=session.store.root,
        task=session.dataset.task,
        variants=variants,
        stages=results,
        summary=summary | core,
    )
    contributed = summary_entries(session.registry, run)
    core["warnings"].extend(contributed.pop("warnings", []))
    return contributed | core
