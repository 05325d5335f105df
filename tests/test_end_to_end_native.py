"""End-to-end on the native layouts (slow; CI runs `pytest -m slow`): `saadi run --dataset
endoscapes --data-root <fixture> --generator ssi --selector segformer` with its curves sent to
TensorBoard and MLflow and read back, and `saadi run --dataset lapgyn4 ... --generator ssd`.

The fixture folders mirror each dataset's published layout (tests/_native_layouts.py) with toy
scenes in them; sizes are cut down as in tests/test_end_to_end*.py, so these check the wiring —
the dataset's own classes and splits reach every stage, the trackers receive the DPO curves —
not whether alignment helps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _native_layouts import ENDOSCAPES_CATEGORIES, LAPGYN4_CLASSES, make_endoscapes, make_lapgyn4
from test_tracking import read_mlflow, read_tensorboard

pytestmark = pytest.mark.slow


def _run(args: list[str], small: list[str], runs: Path, name: str) -> subprocess.CompletedProcess:
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
        "--pairing",
        "best-worst",
        *args,
    ]
    for assignment in [*small, "fidelity.metrics=[]"]:
        cmd += ["--set", assignment]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the run's own store
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900, env=env)


def test_endoscapes_ssi_segformer_with_tensorboard_and_mlflow(tmp_path: Path) -> None:
    root = tmp_path / "endoscapes"
    make_endoscapes(root, n={"train": 12, "val": 2, "test": 4}, size=(114, 64))
    small = [
        "generator.options.max_steps=20",
        "generator.options.n_conditions=4",
        "generator.options.sampling_steps=2",
        "selector.options.epochs=1",
        "selector.options.score_include_background=true",
        "aligner.options.steps=4",
        "aligner.options.validate_every=2",
        "pool.n_per_condition=6",
        "evaluation.n_per_condition=4",
        "evaluation.scales=[0.25]",
    ]
    args = [
        "--dataset",
        "endoscapes",
        "--data-root",
        str(root),
        "--generator",
        "ssi",
        "--selector",
        "segformer",
        "--log-with",
        "tensorboard",
        "--log-with",
        "mlflow",
    ]
    done = _run(args, small, tmp_path / "runs", "endo")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "endo"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "segmentation" and summary["components"]["dataset"] == "endoscapes"
    assert set(summary["selector_test"]["per_class_dice"]) <= set(ENDOSCAPES_CATEGORIES) | {
        "background"
    }
    dataset = json.loads(next((run / "stages").glob("data-*/dataset.json")).read_text())
    assert dataset["classes"] == ["background", *ENDOSCAPES_CATEGORIES] and (
        dataset["train"],
        dataset["test"],
    ) == (14, 4)

    tb = read_tensorboard(run / "tracking" / "tensorboard" / "endo")
    assert [s for s, _ in tb["align/dpo_step/loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in tb["align/dpo_validate/selector_pass"]] == [0, 2, 4]
    assert any(t.startswith("train-generator/") and t.endswith(".train/loss") for t in tb)
    assert "train-selector/selector_epoch/loss" in tb
    assert {"timing/align_seconds", "timing/train-generator_seconds"} <= set(tb)
    assert tb["summary/dpo_implicit_accuracy"][0][1] == pytest.approx(
        summary["dpo_implicit_accuracy"]
    )
    assert (
        "summary/downstream/real_aligned_0.25x/mean" in tb
    )  # '+' and '@' replaced: MLflow rejects them

    metrics, params = read_mlflow((run / "tracking" / "mlruns").resolve().as_uri(), "endo")
    assert [s for s, _ in metrics["align/dpo_step/loss"]] == [1, 2, 3, 4]
    assert [v for _, v in metrics["align/dpo_step/loss"]] == pytest.approx(
        [v for _, v in tb["align/dpo_step/loss"]]
    )
    assert params["dataset.kind"] == "endoscapes" and params["generator.kind"] == "ssi"


def test_lapgyn4_ssd(tmp_path: Path) -> None:
    root = tmp_path / "download"
    make_lapgyn4(root, per_class=8)
    small = [
        "generator.options.max_steps=20",
        "selector.options.epochs=1",
        "aligner.options.steps=4",
        "aligner.options.validate_every=2",
        "pool.n_per_condition=8",
        "evaluation.n_per_condition=8",
        "downstream.kind=resnet18",
        "downstream.options.epochs=1",
    ]
    args = [
        "--dataset",
        "lapgyn4",
        "--data-root",
        str(root),
        "--generator",
        "ssd",
        "--selector",
        "resnet18",
    ]
    done = _run(args, small, tmp_path / "runs", "lg")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "lg" / "summary.json").read_text())
    assert summary["task"] == "classification" and summary["components"]["generator"] == "ssd"
    assert set(summary["selector_test"]["per_class_f1"]) == set(LAPGYN4_CLASSES)
    assert {"real", "real+base@1x", "real+aligned@1x"} <= set(summary["downstream"])
    assert summary["oracle_pass"] is None  # real data has no oracle
