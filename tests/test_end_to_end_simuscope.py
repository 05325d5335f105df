"""End-to-end: `saadi run --generator simuscope --selector segformer` on the embedded default
(toy-seg with toy-simulator frames) with the real plugins (slow; CI runs `pytest -m slow`).

Sizes are cut down (96 training images, 20 control + 5 style steps, 1-epoch selectors,
best-worst pairing) so this checks the wiring and outputs of the loop — pass rates with their
McNemar p-values, downstream Dice, samples that keep their simulator label, and the evaluate
stage's label-preservation mIoU with its interval over conditions; it does not
assert that alignment helps (docs/generators/simuscope.md reports the full tiny figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from saadi_core.samples_io import load_samples

pytestmark = pytest.mark.slow


def _stage(run: Path, name: str) -> Path:
    manifest = json.loads((run / "manifest.json").read_text())
    return (run / manifest["stages"][name]["path"]).resolve()


def test_simuscope_loop_on_the_embedded_default(tmp_path: Path) -> None:
    small = [
        "dataset.options.n_train=96",
        "dataset.options.n_test=24",
        "generator.options.max_steps=20",
        "generator.options.style_steps=5",
        "generator.options.n_style_frames=16",
        "generator.options.n_conditions=4",
        "generator.options.sampling_steps=4",
        "selector.options.epochs=1",
        # a 1-epoch selector predicts mostly background: with background in the score, samples still differ
        "selector.options.score_include_background=true",
        "aligner.options.steps=4",
        "aligner.options.validate_every=2",
        "pool.n_per_condition=6",
        "evaluation.n_per_condition=6",
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
        "simuscope",
        "--generator",
        "simuscope",
        "--selector",
        "segformer",
        "--pairing",
        "best-worst",
    ]
    for assignment in small:
        cmd += ["--set", assignment]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "simuscope"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "segmentation" and summary["components"]["generator"] == "simuscope"
    for key in (
        "selector_pass",
        "oracle_pass",
    ):  # toy-seg has an oracle: both are tested base vs aligned
        assert 0.0 <= summary[key]["p_value"] <= 1.0 and summary[key]["n"] > 0, key
    assert summary["downstream"]["metric"] == "mean_dice"
    assert {"real", "real+base@0.25x", "real+aligned@0.25x"} <= set(summary["downstream"])
    assert summary["alignment"]["lora"]["adapter_name"] == "saadi_dpo"

    # label preservation, measured by the evaluate stage with the run's own selector
    preserved = summary["label_preservation"]
    for variant in ("base", "aligned"):
        assert 0.0 <= preserved[variant]["miou"] <= 1.0
        assert set(preserved[variant]["per_class_iou"]) <= {
            "background",
            "gallbladder",
            "cystic_duct",
            "cystic_artery",
            "tool",
        }
    assert preserved["change"]["n_groups"] == 4 and preserved["change"]["ci95"] is not None
    assert "label preservation (selector mIoU" in done.stdout  # the end-of-run table prints it
    for variant in ("base", "aligned"):
        samples = load_samples(_stage(run, f"sample-{variant}"))
        assert all(
            s.condition.id.startswith("sim:") and torch.equal(s.mask, s.condition.mask)
            for s in samples
        )
