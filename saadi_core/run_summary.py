"""``summary.json``: the figures of a finished run, assembled from its stages' outputs."""

from __future__ import annotations

from typing import Any

from saadi_core.session import RunSession
from saadi_core.stages.downstream import aggregate
from saadi_core.store import StageResult

FIDELITY_HEADLINE = ("fid", "kid_mean", "psnr", "diversity_ms_ssim")


def alignment_entries(scored: StageResult, paired: StageResult, aligned: StageResult) -> dict[str, Any]:
    """What the alignment stages report: score diagnostics, pair statistics, DPO's last accuracy."""
    return {
        "score_diagnostics": scored.outputs,
        "pairs": paired.outputs,
        "dpo_implicit_accuracy": aligned.outputs.get("implicit_accuracy"),
        "alignment": aligned.outputs.get("meta"),
    }


def evaluation_entries(
    session: RunSession,
    variants: list[str],
    evaluated: StageResult,
    fidelity: dict[str, Any] | None,
    downstream: dict[str, dict[str, Any]],
    diagnostics: dict[str, Any] | None,
) -> dict[str, Any]:
    """Pass rates and their tests, fidelity with its comparison, downstream and stage times."""
    outputs = evaluated.outputs
    stages = session.store.manifest.get("stages", {})
    return {
        "pass_rates": {v: outputs[v] for v in variants},
        "selector_pass": outputs.get("selector_pass"),
        "oracle_pass": outputs.get("oracle_pass"),
        "class_presence": outputs.get("class_presence"),
        "label_preservation": outputs.get("label_preservation"),
        "warnings": [*(diagnostics or {}).get("warnings", []), *outputs.get("warnings", [])],
        "fidelity": None if fidelity is None else fidelity_entry(fidelity),
        "downstream": aggregate(downstream, session.dataset.task),
        "timings_s": {name: s.get("seconds") for name, s in stages.items()},
    }


def fidelity_entry(fidelity: dict[str, Any]) -> dict[str, Any]:
    """The headline of the run's ``fidelity.json``: per-variant figures and aligned − base."""
    return {
        "feature_extractor": (fidelity.get("feature_extractor") or {}).get("label"),
        **{v: {k: m[k] for k in FIDELITY_HEADLINE if k in m} for v, m in fidelity["variants"].items()},
        "comparison": {
            k: {f: b.get(f) for f in ("difference", "ci95", "verdict")} for k, b in (fidelity.get("comparison") or {}).items()
        },
    }
