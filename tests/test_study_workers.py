"""``saadi study --executor processes --workers 2`` and ``--executor slurm`` (submitit's local
cluster: the job array path without Slurm) on the real plugins give a ``study.json`` bit-identical
to the sequential run (slow; CI runs `pytest -m slow`).

The study is ``examples/studies/quick.yaml`` cut down (2 seeds, 32-px toy data, a few training
steps) so both runs fit in a few minutes. The two workers share the stage store: the base and the
aligned arm of a seed need the same trained generator, selector and real-only downstream model,
so whichever worker gets there second waits on the stage lock and reuses the result. Wall time is
measured by ``benchmarks/study_workers.py``, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

STUDY = {
    "name": "quick-small",
    "dataset": {"kind": "toy-cls", "options": {"n_train": 60, "n_test": 40, "image_size": 32}},
    "selector": {"kind": "resnet18", "options": {"epochs": 1}},
    "pairing": "best-worst",
    "pool": {"n_per_condition": 4},
    "seeds": [0, 1],
    "scales": [1],
    "arms": [
        {
            "name": "ssd",
            "generator": {"kind": "ssd", "options": {"max_steps": 10, "sampling_steps": 4}},
        },
        {
            "name": "ssd-saadi",
            "generator": {"kind": "ssd", "options": {"max_steps": 10, "sampling_steps": 4}},
            "aligner": {"kind": "diffusion-dpo", "options": {"steps": 2, "validate_every": 2}},
        },
    ],
}


def _study(root: Path, *executor: str) -> str:
    config = root / "study.yaml"
    config.write_text(yaml.safe_dump(STUDY))
    env = os.environ | {"OMP_NUM_THREADS": "1", "SAADI_RUNS_DIR": str(root / "runs")}
    cmd = [sys.executable, "-m", "saadi_core.cli", "--quiet", "study", str(config), *executor]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    # the run paths name the runs directory; nothing else may differ
    return (
        (root / "runs" / "quick-small" / "study.json")
        .read_text()
        .replace(str(root / "runs"), "<runs>")
    )


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _study(tmp_path_factory.mktemp("sequential"))


def test_two_workers_give_the_sequential_study_json(tmp_path: Path, sequential: str) -> None:
    parallel = _study(tmp_path, "--executor", "processes", "--workers", "2")
    assert parallel == sequential
    summary = json.loads(parallel)
    assert [a["name"] for a in summary["arms"]] == ["ssd", "ssd-saadi"] and len(
        summary["real_only"]["values"]
    ) == 2
    # each shared stage was computed once: per seed one generator and one selector for both arms
    stages_dir = tmp_path / "runs" / "quick-small" / "stages"
    stages = [p.name.rsplit("-", 1)[0] for p in stages_dir.iterdir() if not p.name.startswith(".")]
    assert (
        stages.count("train-generator") == 2
        and stages.count("train-selector") == 2
        and stages.count("data") == 1
    )


def test_submitit_local_cluster_gives_the_sequential_study_json(
    tmp_path: Path, sequential: str
) -> None:
    pytest.importorskip("submitit")
    on_cluster = _study(
        tmp_path,
        "--executor",
        "slurm",
        "--executor-option",
        "cluster=local",
        "--executor-option",
        "cpus_per_task=1",
    )
    assert on_cluster == sequential
    assert any((tmp_path / "runs" / "quick-small" / "submitit").iterdir())  # submitit's job folders
