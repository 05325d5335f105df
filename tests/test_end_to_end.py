"""End-to-end: the README's main command on the embedded default (slow; CI runs `pytest -m slow`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_saadi_run_on_embedded_default_then_resume(tmp_path):
    cmd = [sys.executable, "-m", "saadi_core.cli", "--quiet", "run", "--runs-dir", str(tmp_path), "--name", "e2e"]
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
