"""End-to-end segmentation: `saadi run --generator ssi` on a user folder (images/ + palette-PNG
masks/ + classes.yaml) with the real plugins (slow; CI runs `pytest -m slow`).

The folder is written from toy-seg scenes so the run has something learnable; sizes are cut down
(64 training images, 20 generator steps, 1-epoch selectors, best-worst pairing) so this checks
the wiring and outputs of the segmentation loop — Dice keys, masks carried by samples, the
selectors issue 5 names — not whether alignment helps (benchmarks/alignment_seeds.py measures
that on the full tiny profile). A malformed mask must stop the run before any training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

PALETTE = {
    "background": (0, 0, 0),
    "gallbladder": (0, 200, 0),
    "cystic_duct": (200, 200, 0),
    "cystic_artery": (200, 0, 0),
    "tool": (0, 0, 200),
}


def _write_folder(root: Path, n: int = 64) -> Path:
    from saadi_core.data.toy_seg import make_toy_seg

    data = make_toy_seg(seed=3, n_train=n, n_test=8)
    assert data.class_names == list(PALETTE)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text(
        "".join(f"{name}: [{r}, {g}, {b}]\n" for name, (r, g, b) in PALETTE.items())
    )
    flat = [c for rgb in PALETTE.values() for c in rgb]
    for i, (image, mask) in enumerate(zip(data.train.images, data.train.masks)):
        Image.fromarray(image).save(root / "images" / f"frame{i:03d}.png")
        labels = Image.fromarray(mask.astype(np.uint8), mode="P")
        labels.putpalette(flat)
        labels.save(root / "masks" / f"frame{i:03d}.png")
    return root


def _run(root: Path, runs: Path, selector: str, name: str = "seg") -> subprocess.CompletedProcess:
    small = [
        f"dataset.options.root={root}",
        "generator.options.max_steps=20",
        "generator.options.n_conditions=4",
        "generator.options.sampling_steps=2",
        "selector.options.epochs=1",
        "aligner.options.steps=4",
        # a 1-epoch selector predicts background everywhere: with background in the score, the
        # samples still get different scores (without it every score is 0 and nothing pairs)
        "selector.options.score_include_background=true",
        "aligner.options.validate_every=2",
        "pool.n_per_condition=6",
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
        str(runs),
        "--name",
        name,
        "--dataset",
        "folder-seg",
        "--generator",
        "ssi",
        "--selector",
        selector,
        "--pairing",
        "best-worst",
    ]
    for assignment in small:
        cmd += ["--set", assignment]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1500)


def test_ssi_loop_on_a_palette_mask_folder_with_three_segmenters(tmp_path):
    root = _write_folder(tmp_path / "data")
    for selector in ("segformer", "deeplabv3", "upernet"):
        done = _run(root, tmp_path / "runs", selector)
        assert done.returncode == 0, f"{selector}: {done.stderr[-3000:]}"
        summary = json.loads((tmp_path / "runs" / "seg" / "summary.json").read_text())
        assert summary["task"] == "segmentation" and summary["components"]["selector"] == selector
        assert summary["downstream"]["metric"] == "mean_dice"
        assert {"real", "real+base@0.25x", "real+aligned@0.25x"} <= set(summary["downstream"])
        assert (
            0.0 <= summary["selector_pass"]["p_value"] <= 1.0 and summary["selector_pass"]["n"] > 0
        )
        assert summary["oracle_pass"] is None  # a user folder has no oracle
        assert set(summary["selector_test"]["per_class_dice"]) >= {"gallbladder", "tool"}
    manifest = json.loads((tmp_path / "runs" / "seg" / "manifest.json").read_text())
    assert manifest["stages"]["train-generator"][
        "cached"
    ]  # the generator was trained once for all three


def test_a_malformed_mask_stops_the_run_before_training(tmp_path):
    root = _write_folder(tmp_path / "data", n=8)
    Image.fromarray(np.full((64, 64), 9, np.uint8), mode="L").save(root / "masks" / "frame003.png")
    done = _run(root, tmp_path / "runs", "segformer")
    assert done.returncode == 2
    assert "frame003.png" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "runs").glob("*/stages/train-generator-*"))
