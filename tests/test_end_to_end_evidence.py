"""The evidence arms with the real plugins on toy-cls at cut-down sizes: real only, base, filter,
each aligner (DPO, SFT on winners mixed with real images, KTO), on-policy SFT rounds and the
train-longer control every other arm is paired with — wiring
and the evidence table, not quality (aligned + filter and several downstream seeds are covered
with fakes in test_study). About 1 min on an idle 2-core machine."""

from __future__ import annotations

import json

import pytest

from saadi_core.config import StudyConfig
from saadi_core.registry import get_registry
from saadi_core.study import run_study

pytestmark = pytest.mark.slow

FAST = {"steps": 2, "batch_size": 4, "validate_every": 1, "validation_size": 10}


def test_evidence_arms_in_one_study(tmp_path):
    def arm(name, aligner=None, **extra):
        # 4 denoising steps instead of 12: every arm samples (held-out set, validation, filter rounds)
        return {
            "name": name,
            "generator": {"kind": "ssd", "options": {"max_steps": 20, "sampling_steps": 4}},
            "aligner": aligner,
            **extra,
        }

    on_policy = {
        "kind": "iterative",
        "options": {
            "rounds": 2,
            "pool": "on-policy",
            "pool_per_condition": 2,
            "continue_from_previous": True,
            "inner": {"kind": "sft-winners", "options": {**FAST, "threshold": 0.0}},
        },
    }
    config = StudyConfig.model_validate(
        {
            "name": "evidence",
            "runs_dir": str(tmp_path),
            "dataset": {"kind": "toy-cls", "options": {"n_train": 40, "n_test": 40}},
            "selector": {"kind": "resnet18", "options": {"epochs": 1}},
            "pairing": {"kind": "best-worst", "options": {"k": 2}},
            "pool": {"n_per_condition": 4},
            # the aligned − base FID interval with the fewest resamples (200 by default cost 9 s per arm)
            "fidelity": {"metrics": ["fid"], "options": {"fid": {"compare_resamples": 10}}},
            "seeds": [0],
            "downstream_seeds": 1,
            "scales": [1],
            "arms": [
                arm("base"),
                arm("filter", filter=True),
                arm("dpo", {"kind": "diffusion-dpo", "options": FAST}),
                arm(
                    "sft",
                    {
                        "kind": "sft-winners",
                        "options": {**FAST, "threshold": 0.0, "real_fraction": 0.5},
                    },
                ),
                arm("kto", {"kind": "diffusion-kto", "options": FAST}),
                arm("on-policy", on_policy),
                arm("control", {"kind": "train-longer", "options": FAST}, control=True),
            ],
        }
    )
    result = run_study(config, get_registry(), quiet=True)
    evidence = result.summary["evidence"]
    rows = {r["arm"]: r for r in evidence["rows"]}
    assert set(rows) == {
        "real only",
        "base",
        "filter",
        "dpo",
        "sft",
        "kto",
        "on-policy",
        "control",
    }
    for name in ("dpo", "sft", "kto", "on-policy", "filter"):
        row = rows[name]
        assert (
            0.0 <= row["oracle_pass"] <= 1.0
            and 0.0 <= row["selector_pass"] <= 1.0
            and row["fid"] is not None
        )
        assert (
            row["macro_f1"]["n_cells"] == 1
            and row["vs_base"]["n_cells"] == 1
            and row["vs_filter" if name != "filter" else "vs_base"]
        )
    assert rows["filter"]["selector_pass"] >= rows["base"]["selector_pass"]
    runs = tmp_path / "evidence" / "runs"
    sft = json.loads((runs / "sft-seed0" / "summary.json").read_text())["alignment"]
    assert sft["n_real"] == 40 and sft["n_winners"] == 20  # h = 0: every pool sample is a winner
    on = json.loads((runs / "on-policy-seed0" / "summary.json").read_text())["alignment"]
    assert on["pool"] == "on-policy" and on["rounds"][1]["n_pool"] == 5 * 2
    control = json.loads((runs / "control-seed0" / "summary.json").read_text())["alignment"]
    assert control["n_winners"] == 0 and control["n_real"] == 40
    # every arm with evaluation samples is paired with the control, sample by sample
    n_eval = json.loads((runs / "dpo-seed0" / "summary.json").read_text())["oracle_pass"]["n"]
    for name in ("base", "dpo", "sft", "kto", "on-policy"):
        assert rows[name]["oracle_vs_control"]["pooled"]["n"] == n_eval, name
    assert rows["dpo"]["vs_control"]["n_cells"] == 1 and "oracle_vs_control" not in rows["filter"]
    dpo = json.loads((runs / "dpo-seed0" / "summary.json").read_text())["alignment"]
    assert dpo["select_rule"] == "lcb"  # the pipeline's validator gives paired per-sample values
