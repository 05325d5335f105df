"""A study with the real plugins: SSI and SimGen, each aligned, and their 50/50 mix, on toy-seg
at cut-down sizes (wiring, sharing and mixing — not quality)."""

from __future__ import annotations

import json

import pytest

from saadi_core.config import StudyConfig
from saadi_core.registry import get_registry
from saadi_core.study import run_study

pytestmark = pytest.mark.slow


def test_ssi_and_simgen_mix_in_one_study(tmp_path):
    def arm(name, kind):
        return {
            "name": name,
            "generator": {"kind": kind, "options": {"max_steps": 60}},
            "aligner": {"kind": "diffusion-dpo", "options": {"steps": 10, "validate_every": 5}},
        }

    config = StudyConfig.model_validate(
        {
            "name": "mix",
            "runs_dir": str(tmp_path),
            "dataset": {"kind": "toy-seg", "options": {"n_train": 120, "n_test": 60}},
            "selector": {"kind": "segformer", "options": {"epochs": 2}},
            "pairing": {"kind": "best-worst", "options": {"k": 2}},
            "pool": {"n_per_condition": 8},
            "fidelity": {"metrics": ["fid"]},
            "seeds": [0],
            "scales": [1],
            "arms": [
                arm("ssi-saadi", "ssi"),
                arm("simgen-saadi", "simgen"),
                {"name": "half-half", "mix": ["ssi-saadi", "simgen-saadi"]},
            ],
        }
    )
    result = run_study(config, get_registry(), quiet=True)
    arms = {a["name"]: a for a in result.summary["arms"]}
    assert result.summary["metric"] == "mean_dice" and set(arms) == {
        "ssi-saadi",
        "simgen-saadi",
        "half-half",
    }
    for name in arms:
        assert 0.0 <= arms[name]["downstream"]["1"]["mean"] <= 1.0
    for name in (
        "ssi-saadi",
        "simgen-saadi",
    ):  # samples carry masks: label preservation per seed, base vs aligned
        preserved = arms[name]["pass_rates"]["0"]["label_preservation"]
        assert 0.0 <= preserved["aligned"]["miou"] <= 1.0 and "verdict" in preserved["change"]
    # the mix trained on 120 synthetic samples: 60 SSI (conditioning masks) + 60 SimGen (own masks)
    mix_root = tmp_path / "mix" / "runs" / "half-half-seed0"
    stages = json.loads((mix_root / "manifest.json").read_text())["stages"]
    meta = json.loads(
        (mix_root / stages["downstream-half-half-1x-s0"]["path"] / "stage.json").read_text()
    )
    assert meta["outputs"]["n_synthetic"] == 120 and {"sample-aligned"} <= set(meta["deps"])
    fidelity = json.loads(
        (tmp_path / "mix" / "runs" / "simgen-saadi-seed0" / "fidelity.json").read_text()
    )
    assert "fid" in fidelity["variants"]["aligned"]
