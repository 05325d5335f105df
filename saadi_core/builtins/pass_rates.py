"""Selector and oracle pass rates per variant and, with an aligned variant, the paired
base-vs-aligned test (exact McNemar on the same seeds) — the evidence that alignment changed
what the images show. With enough conditions (segmentation masks, layouts) the conditions are
the unit and a paired test over them decides the verdict
(:func:`saadi_core.evaluation.stats.condition_paired_test`)."""

from __future__ import annotations

from typing import Any

from saadi_core.hookspecs import hookimpl
from saadi_core.stages.names import EVALUATE


@hookimpl
def saadi_evaluate_samples(evaluation: Any) -> dict[str, Any]:
    from saadi_core.evaluation.samples import paired_groups
    from saadi_core.evaluation.stats import (
        condition_paired_test,
        mcnemar_exact,
        with_condition_test,
    )

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
        groups = paired_groups(evaluation.samples["base"], evaluation.samples["aligned"])
        for key, verdicts in (
            ("selector_pass", evaluation.selector_pass),
            ("oracle_pass", evaluation.oracle_pass),
        ):
            if verdicts["base"] is None:
                continue
            test = mcnemar_exact(verdicts["base"], verdicts["aligned"])
            by_condition = (
                None
                if groups is None
                else condition_paired_test(groups, verdicts["base"], verdicts["aligned"])
            )
            results[key] = with_condition_test(test, by_condition)
    return results


@hookimpl
def saadi_summary_entries(run: Any) -> dict[str, Any]:
    outputs = run.outputs(EVALUATE)
    return {
        "pass_rates": {v: outputs[v] for v in run.variants if v in outputs},
        "selector_pass": outputs.get("selector_pass"),
        "oracle_pass": outputs.get("oracle_pass"),
    }
