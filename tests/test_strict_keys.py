"""``strict_keys``: stages keyed by what computes them (torch threads, device) as well as by
their code and parameters, for bit-for-bit reproductions across machines."""

from __future__ import annotations

from pathlib import Path

import torch

from saadi_core.config import RunConfig, StudyConfig
from saadi_core.registry import get_registry
from saadi_core.session import RunSession
from saadi_core.study import arm_run_config


def test_strict_keys_recompute_a_stage_under_another_thread_count(tmp_path: Path) -> None:
    """Off, a stage computed with 2 threads is reused with 1 (a study reuses a single run's
    stages); with ``strict_keys`` it is computed again, because its floats would differ."""
    before = torch.get_num_threads()
    try:
        for strict in (False, True):
            run = RunSession(
                RunConfig(runs_dir=tmp_path, name=f"strict{strict}", strict_keys=strict),
                get_registry(),
                True,
                None,
            )
            run.store.release()
            cached = []
            for threads in (2, 1, 2):
                torch.set_num_threads(threads)
                result = run.stage("x", {"a": 1}, lambda d: {"threads": torch.get_num_threads()})
                cached.append(result.cached)
            assert cached == ([False, True, True] if not strict else [False, False, True])
    finally:
        torch.set_num_threads(before)


def test_strict_keys_pass_from_a_study_to_its_runs(tmp_path: Path) -> None:
    study = StudyConfig(
        name="s", runs_dir=tmp_path, strict_keys=True, arms=[{"name": "b", "generator": "ssd"}]
    )
    assert arm_run_config(study, study.arms[0], 0, get_registry()).strict_keys
