"""Selector and oracle pass rates per variant and, with an aligned variant, the paired
base-vs-aligned test (exact McNemar on the same seeds) — the evidence that alignment changed
what the images show."""

from __future__ import annotations

from typing import Any

from saadi_core.hookspecs import hookimpl
from saadi_core.stages.names import EVALUATE


@hookimpl
def saadi_evaluate_samples(evaluation: Any) -> dict[str, Any]:
    from saadi_core.evaluation.stats import mcnemar_exact

    results: dict[str, Any] = {}
    for variant in evaluation.variants:
        scores, passed, oracle = (
            evaluation.scores[variant],
            evaluation.selector_pass[variant],
            evaluation.oracle_pass[variant],
        )
        results[variant] = {
            "n": len(scores),
            "mean_score": sum(scores) / len(scores),
            "selector_rate": sum(passed) / len(scores),
            "oracle_rate": None if oracle is None else sum(oracle) / len(oracle),
        }
    if evaluation.paired:
        results["selector_pass"] = mcnemar_exact(
            evaluation.selector_pass["base"], evaluation.selector_pass["aligned"]
        )
        if evaluation.oracle_pass["base"] is not None:
            results["oracle_pass"] = mcnemar_exact(
                evaluation.oracle_pass["base"], evaluation.oracle_pass["aligned"]
            )
    return results


@hookimpl
def saadi_summary_entries(run: Any) -> dict[str, Any]:
    outputs = run.outputs(EVALUATE)
    return {
        "pass_rates": {v: outputs[v] for v in run.variants if v in outputs},
        "selector_pass": outputs.get("selector_pass"),
        "oracle_pass": outputs.get("oracle_pass"),
    }
