"""One run on two CPU processes: ``torchrun --nproc_per_node 2 -m saadi_core run …`` (gloo).

Checks that the whole loop completes, that only rank 0 wrote the run (one run directory, each
stage started once in the events), and that sampling sharded over the ranks and gathered in seed
order gives exactly what one process samples from the same weights — the base and the aligned
generator are re-loaded here, in one process, and sampled with the run's conditions and seed.
Training itself is data-parallel (each rank its own batches and pairs, gradients averaged), so
its weights differ from a one-process run's; that is why the comparison is on the same weights.
The fast tests cover the single-process behaviour of :mod:`saadi_core.distributed`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from saadi_core.config import RunConfig
from saadi_core.registry import Registry
from saadi_core.samples_io import load_samples
from saadi_core.session import RunSession
from saadi_core.store import RunStore, StageResult

SMALL = [
    "dataset.options.n_train=40",
    "dataset.options.n_test=20",
    "dataset.options.image_size=32",
    "generator.options.max_steps=6",
    "generator.options.batch_size=8",
    "generator.options.sampling_steps=3",
    "selector.options.epochs=1",
    "downstream.options.epochs=1",
    "aligner.options.steps=2",
    "aligner.options.validate_every=2",
    "pool.n_per_condition=4",
    "evaluation.n_per_condition=4",
    "fidelity.metrics=[]",
]


def _stage(run: Path, manifest: dict, name: str) -> StageResult:
    entry = manifest["stages"][name]
    path = (run / entry["path"]).resolve()
    return StageResult(
        name=name, key=entry["key"], path=path, meta=json.loads((path / "stage.json").read_text())
    )


def test_without_a_launcher_a_run_is_one_plain_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saadi_core import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.world_size() == 1 and distributed.is_main_process()
    assert (
        distributed.run_accelerator("cpu") is None
    )  # components make their own, with their own precision
    store = distributed.create_store(tmp_path, "r", {}, {}, None)
    assert type(store) is RunStore and store.root == tmp_path / "r"


@pytest.mark.slow
def test_torchrun_two_processes_complete_the_loop_and_sample_like_one(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "saadi_core",
        "--quiet",
        "run",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "two",
        "--device",
        "cpu",
        "--generator",
        "ssd",
        "--selector",
        "resnet18",
        "--pairing",
        "best-worst",
    ]
    for assignment in SMALL:
        cmd += ["--set", assignment]
    done = subprocess.run(
        cmd,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert all(stage["status"] == "done" for stage in manifest["stages"].values())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["alignment"]["num_processes"] == 2
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    started = [e["stage"] for e in events if e["event"] == "stage_started"]
    assert len(started) == len(set(started)) == len(manifest["stages"])  # rank 0 alone logged

    # the same weights sampled in one process give the same samples, in the same order
    session = RunSession(
        RunConfig.model_validate(manifest["config"]), Registry.discover(), True, None
    )
    trained = _stage(run, manifest, "train-generator")
    generators = {
        "base": session.load_generator(trained),
        "aligned": session.aligned_generator(trained, _stage(run, manifest, "align")),
    }
    for variant, generator in generators.items():
        stage = _stage(run, manifest, f"sample-{variant}")
        stored = load_samples(stage.path)
        fresh = generator.sample(
            generator.conditions(session.dataset),
            stage.outputs["n_per_condition"],
            session.eval_seed,
        )
        assert [(s.condition.id, s.index) for s in stored] == [
            (s.condition.id, s.index) for s in fresh
        ]
        assert all(torch.equal(a.image, b.image) for a, b in zip(stored, fresh, strict=True)), (
            variant
        )
