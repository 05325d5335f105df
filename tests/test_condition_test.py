"""Pass-rate tests with conditions as the unit: samples of one mask fail together, so with enough
conditions a paired test over the conditions' mean changes decides the verdict — in the run's
evaluation, the study's evidence table, the end-of-run table and the report's wording."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import ttest_rel

from saadi_core.builtins.pass_rates import saadi_evaluate_samples
from saadi_core.evaluation.stats import (
    MIN_CLUSTERS,
    condition_paired_test,
    mcnemar_exact,
    with_condition_test,
)
from saadi_core.interfaces import Condition, Sample
from saadi_core.lifecycle import Evaluation
from saadi_core.report.wording import mcnemar_reading

PER = 38


def _one_layout_breaks(n_conditions: int = 16) -> tuple[list[str], list[bool], list[bool]]:
    """Every sample passes under base; under aligned one whole condition fails, one sample of
    each other condition flips either way."""
    groups = [f"mask:{c}" for c in range(n_conditions) for _ in range(PER)]
    base = [True] * len(groups)
    aligned = [not (g == "mask:0") for g in groups]
    return groups, base, aligned


def test_one_broken_layout_is_significant_over_samples_not_over_layouts() -> None:
    groups, base, aligned = _one_layout_breaks()
    over_samples = mcnemar_exact(base, aligned)
    assert over_samples["verdict"] == "worse" and over_samples["p_value"] < 1e-9
    test = condition_paired_test(groups, base, aligned)
    assert test is not None and test["n_conditions"] == 16
    # the same numbers from an independent formula: scipy's paired t on per-condition means
    means_base = [np.mean([b for g, b in zip(groups, base) if g == f"mask:{c}"]) for c in range(16)]
    means_aligned = [
        np.mean([a for g, a in zip(groups, aligned) if g == f"mask:{c}"]) for c in range(16)
    ]
    reference = ttest_rel(means_aligned, means_base)
    assert test["p_value"] == pytest.approx(reference.pvalue)
    assert test["difference_points"] == pytest.approx(-100 / 16, abs=0.01)
    low, high = test["ci95"]
    assert low < 0 < high and test["verdict"] == "no significant difference"
    assert (test["conditions_up"], test["conditions_down"]) == (0, 1)
    block = with_condition_test(over_samples, test)
    assert block["verdict"] == "no significant difference" and block["verdict_test"] == "conditions"
    assert block["p_value"] == over_samples["p_value"]  # McNemar's figures stay visible
    assert mcnemar_reading(block) == ("no significant change (over conditions)", "neutral")
    assert mcnemar_reading(over_samples)[0] == "significantly worse"


def test_a_change_on_most_layouts_is_significant_and_few_layouts_keep_mcnemar() -> None:
    groups = [f"mask:{c}" for c in range(12) for _ in range(10)]
    base = [i % 10 < 5 for i in range(len(groups))]
    aligned = [i % 10 < (8 if i // 10 != 3 else 4) for i in range(len(groups))]
    test = condition_paired_test(groups, base, aligned)
    assert test is not None and test["verdict"] == "improved" and test["ci95"][0] > 0
    # all conditions moved alike: nothing to test against, the sign decides
    alike = condition_paired_test(groups, base, [True] * len(groups))
    assert alike is not None and alike["p_value"] == 0.0 and alike["verdict"] == "improved"
    # under MIN_CLUSTERS conditions (toy-cls's five prompts) the conditions are fixed: McNemar
    few = [f"class:{i % (MIN_CLUSTERS - 1)}" for i in range(len(groups))]
    assert condition_paired_test(few, base, aligned) is None
    assert with_condition_test(mcnemar_exact(base, aligned), None) == mcnemar_exact(base, aligned)
    with pytest.raises(ValueError, match="differ in length"):
        condition_paired_test(groups[:-1], base, aligned)


def test_the_evaluate_hook_decides_by_layouts_when_the_samples_have_them() -> None:
    groups, base, aligned = _one_layout_breaks()
    ids = sorted(set(groups))

    def samples() -> list[Sample]:
        out = []
        for g in ids:
            condition = Condition(id=g, mask=torch.zeros(4, 4, dtype=torch.long))
            out += [Sample(torch.zeros(3, 4, 4), condition, "x", 0, i) for i in range(PER)]
        return out

    evaluation = Evaluation(
        dataset=None,
        selector=None,  # type: ignore[arg-type]
        samples={"base": samples(), "aligned": samples()},
        scores={"base": [1.0] * len(groups), "aligned": [1.0] * len(groups)},
        selector_pass={"base": base, "aligned": aligned},
        oracle_pass={"base": base, "aligned": aligned},
        threshold=0.5,
        seed=0,
    )
    results = saadi_evaluate_samples(evaluation)
    for key in ("selector_pass", "oracle_pass"):
        assert results[key]["by_condition"]["n_conditions"] == 16
        assert results[key]["verdict"] == "no significant difference"
        assert results[key]["fail_to_pass"] == 0 and results[key]["pass_to_fail"] == PER


def _run(root: Path, verdicts: dict[str, list[bool]], conditions: list[str] | None) -> str:
    stage = root / "stages" / "evaluate-x"
    for variant, values in verdicts.items():
        (stage / variant).mkdir(parents=True)
        record = {"oracle": values} | ({} if conditions is None else {"conditions": conditions})
        (stage / variant / "scores.json").write_text(json.dumps(record))
    entry = {"status": "done", "path": "stages/evaluate-x"}
    (root / "manifest.json").write_text(json.dumps({"stages": {"evaluate": entry}}))
    return str(root)


def test_the_study_evidence_pools_layouts_over_seeds(tmp_path: Path) -> None:
    from saadi_core.evidence import _paired_oracle

    groups, base, aligned = _one_layout_breaks()
    runs = {
        s: {"run": _run(tmp_path / f"r{s}", {"base": base, "aligned": aligned}, groups)}
        for s in (0, 1)
    }
    result = _paired_oracle(runs, "aligned", runs, "base")
    assert result is not None
    assert result["per_seed"]["0"]["by_condition"]["n_conditions"] == 16
    pooled = result["pooled"]
    assert pooled["by_condition"]["n_conditions"] == 32  # each seed's layouts are its own units
    assert pooled["verdict_test"] == "conditions"
    assert pooled["verdict"] == "no significant difference" and pooled["p_value"] < 1e-9
    # records written before conditions were kept: McNemar alone, as before
    old = {
        s: {"run": _run(tmp_path / f"old{s}", {"base": base, "aligned": aligned}, None)}
        for s in (0, 1)
    }
    legacy = _paired_oracle(old, "aligned", old, "base")
    assert legacy is not None and "by_condition" not in legacy["pooled"]
    assert legacy["pooled"]["verdict"] == "worse"


def test_the_end_of_run_table_says_which_test_decided() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from saadi_core.summary import print_summary

    groups, base, aligned = _one_layout_breaks()
    block = with_condition_test(
        mcnemar_exact(base, aligned), condition_paired_test(groups, base, aligned)
    )
    summary = {
        "selector_pass": block,
        "oracle_pass": block,
        "evaluation_conditions": "unseen-layouts",
        "run": "runs/x",
    }
    console = Console(record=True, width=200)
    print_summary(SimpleNamespace(summary=summary, session=None), console)
    printed = console.export_text()
    assert "of unseen layouts" in printed and "no significant difference" in printed
    assert "oracle pass rate over the 16 conditions" in printed and "p 0.333" in printed
