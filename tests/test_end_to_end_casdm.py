"""End-to-end: `saadi run --generator casdm --selector segformer` on the embedded toy-seg with the
real plugins (slow; CI runs `pytest -m slow`).

Sizes are cut down (100 training images, 20 image-network and 10 layout-model steps, 1-epoch
selectors, best-worst pairing) so this checks the wiring of the segmentation loop with CASDM's
both kinds of conditions — training masks and generated layouts — through pool, DPO, evaluation
and downstream, not whether alignment helps (the full tiny profile is measured in
docs/generators/casdm.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_casdm_loop_with_training_masks_and_generated_layouts(tmp_path):
    small = [
        "dataset.options.n_train=100",
        "dataset.options.n_test=40",
        "generator.options.max_steps=20",
        "generator.options.layout_max_steps=10",
        "generator.options.conditions=both",
        "generator.options.n_conditions=3",
        "generator.options.sampling_steps=2",
        "generator.options.layout_sampling_steps=2",
        "selector.options.epochs=1",
        "selector.options.score_include_background=true",
        "aligner.options.steps=4",
        "aligner.options.validate_every=2",
        "pool.n_per_condition=4",
        "evaluation.n_per_condition=4",
        "evaluation.scales=[0.25]",
    ]
    cmd = [
        sys.executable,
        "-m",
        "saadi_core.cli",
        "--quiet",
        "run",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "casdm",
        "--generator",
        "casdm",
        "--selector",
        "segformer",
        "--pairing",
        "best-worst",
    ]
    for assignment in small:
        cmd += ["--set", assignment]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "casdm"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "segmentation" and summary["components"]["generator"] == "casdm"
    for key in ("selector_pass", "oracle_pass"):
        assert 0.0 <= summary[key]["p_value"] <= 1.0 and summary[key]["n"] > 0, key
    assert summary["downstream"]["metric"] == "mean_dice"
    assert {"real", "real+base@0.25x", "real+aligned@0.25x"} <= set(summary["downstream"])
    assert summary["alignment"]["lora"]["target_modules"]  # the aligner found adapter targets

    # the pool holds both condition kinds, and downstream Dice is reported per class
    pool = json.loads(next(run.glob("stages/generate-pool-*/stage.json")).read_text())
    assert pool["outputs"]["n_conditions"] == 6
    by_variant = json.loads((run / "downstream.json").read_text())["0"]
    for variant in ("real", "real+base@0.25x", "real+aligned@0.25x"):
        assert set(by_variant[variant]["per_class_dice"]) == {
            "background",
            "gallbladder",
            "cystic_duct",
            "cystic_artery",
            "tool",
        }
