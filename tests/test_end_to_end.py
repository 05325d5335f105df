"""End-to-end: `saadi run` through every stage with the real first-party plugins (slow; CI runs
`pytest -m slow`).

The sizes are cut down (100 training images, 20 generator steps, 1-epoch selectors, best-worst
pairing so an untrained generator still yields pairs) so this checks the wiring, caching and
outputs of the whole loop in a few minutes; whether alignment *helps* on the full tiny profile is
measured by the benchmarks of the SAADi-loop and alignment issues, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_saadi_run_on_embedded_default_then_resume(tmp_path):
    small = [
        "dataset.options.n_train=100",
        "dataset.options.n_test=50",
        "generator.options.max_steps=20",
        "selector.options.epochs=1",
        "aligner.options.steps=4",
        "aligner.options.validate_every=2",
        "pool.n_per_condition=8",
        "evaluation.n_per_condition=8",
        "downstream.kind=resnet18",
        "downstream.options.epochs=1",
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
        "e2e",
        "--generator",
        "ssd",
        "--selector",
        "resnet18",
        "--pairing",
        "best-worst",
    ]
    for assignment in small:
        cmd += ["--set", assignment]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((tmp_path / "e2e" / "summary.json").read_text())
    for key in ("selector_pass", "oracle_pass", "dpo_implicit_accuracy", "downstream", "timings_s"):
        assert summary[key] is not None, key
    assert {"real", "real+base@1x", "real+aligned@1x"} <= set(summary["downstream"])
    for result in (summary["selector_pass"], summary["oracle_pass"]):
        assert 0.0 <= result["p_value"] <= 1.0
        assert result["n"] > 0
    assert "base vs aligned" in first.stdout

    start = time.perf_counter()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    manifest = json.loads((tmp_path / "e2e" / "manifest.json").read_text())
    assert all(stage["cached"] for stage in manifest["stages"].values())
    assert time.perf_counter() - start < 120
