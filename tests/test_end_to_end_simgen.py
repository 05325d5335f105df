"""End-to-end: `saadi run --generator simgen --selector segformer` on cut-down toy-seg with the real
plugins (slow; CI runs `pytest -m slow`).

Sizes are cut down (64 training images, 30 generator steps, 1-epoch selectors, best-worst
pairing so an untrained generator still yields pairs) so this checks the wiring of a joint
image + mask generator through every stage — one unconditional condition, pool samples carrying
their generated masks, DPO on the re-encoded pairs, pass rates with p-values, downstream Dice —
not whether alignment helps (the headline run in docs/benchmarks.md measures that).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow


def test_simgen_loop_on_toy_seg_with_segformer(tmp_path):
    small = [
        "dataset.options.n_train=64",
        "dataset.options.n_test=16",
        "generator.options.max_steps=30",
        "generator.options.sampling_steps=2",
        "selector.options.epochs=1",
        # a 1-epoch selector predicts background everywhere: counting background keeps scores apart
        "selector.options.score_include_background=true",
        "aligner.options.steps=4",
        "aligner.options.validate_every=2",
        "pool.n_per_condition=24",
        "evaluation.n_per_condition=16",
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
        "simgen",
        "--generator",
        "simgen",
        "--selector",
        "segformer",
        "--pairing",
        "best-worst",
    ]
    for assignment in small:
        cmd += ["--set", assignment]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "simgen"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "segmentation" and summary["components"]["generator"] == "simgen"
    for key in (
        "selector_pass",
        "oracle_pass",
    ):  # toy-seg has an oracle: it checks image vs generated mask
        assert 0.0 <= summary[key]["p_value"] <= 1.0 and summary[key]["n"] == 16, key
    assert summary["downstream"]["metric"] == "mean_dice"
    assert {"real", "real+base@0.25x", "real+aligned@0.25x"} <= set(summary["downstream"])
    assert summary["dpo_implicit_accuracy"] is not None

    from saadi_core.samples_io import load_samples

    (pool_dir,) = (run / "stages").glob("generate-pool-*")
    pool = load_samples(pool_dir)
    assert len(pool) == 24 and {s.condition.id for s in pool} == {"uncond"}
    assert all(
        s.mask is not None and s.mask.dtype == torch.int64 and s.mask.shape == (64, 64)
        for s in pool
    )
    assert all(0.0 <= s.meta["mask_clean_fraction"] <= 1.0 for s in pool)
    (trained,) = (run / "stages").glob("train-generator-*")
    report = json.loads((trained / "model" / "simgen.json").read_text())["fit_report"]
    assert report["mask_decode_accuracy_train"] == 1.0 and report["steps"] == 30
