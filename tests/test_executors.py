"""Study executors: the ``executor`` plugin category, the built-in kinds, a third party's executor
running a whole study, and results that do not depend on the order jobs ran in. Uses the
in-process plugins of ``test_pipeline`` (the 2-worker study on real plugins is a slow test)."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import pytest
from test_pipeline import FakePlugin
from test_study import study_config

from saadi_core import hookimpl
from saadi_core.errors import SaadiError
from saadi_core.executors import Executor, LocalExecutor, create_executor, worker_threads
from saadi_core.registry import NoOptions, Registry
from saadi_core.study import run_study

JOBS_SEEN: list[Any] = []


class BackwardsExecutor:
    """A third party's executor: runs the jobs last to first (in this process)."""

    in_process = True

    def __init__(self, options: Any, context: Any = None) -> None:
        self.options = options

    def map(self, fn: Any, jobs: Any) -> list[Any]:
        JOBS_SEEN.append([(j.arm, j.seed) for j in jobs])
        return [fn(job) for job in reversed(jobs)][::-1]


class ExecutorPlugin:
    @hookimpl
    def saadi_register_executors(self, register: Any) -> None:
        register(
            "backwards",
            f"{__name__}:BackwardsExecutor",
            options=NoOptions,
            description="jobs last to first",
        )


def _registry(*extra: Any) -> Registry:
    registry = Registry()
    registry.add_plugin(FakePlugin(), name="fake")
    for i, plugin in enumerate(extra):
        registry.add_plugin(plugin, name=f"extra-{i}")
    return registry


def _study_json(root: Path) -> str:
    # run paths name the study's directory; everything else must be identical
    return (root / "s" / "study.json").read_text().replace(str(root), "<root>")


def test_built_in_kinds_are_registered_through_the_hook() -> None:
    registry = Registry.discover(entry_points=False)
    assert registry.kinds("executor") == ["local", "processes", "slurm"]
    assert {e.plugin for e in registry.entries("executor")} == {"saadi-core.executors"}
    for kind in registry.kinds("executor"):
        assert isinstance(registry.create("executor", kind), Executor)


def test_a_plugin_executor_runs_a_study_and_job_order_does_not_change_the_result(
    tmp_path: Path,
) -> None:
    JOBS_SEEN.clear()
    registry = _registry(ExecutorPlugin())
    run_study(study_config(tmp_path / "a"), registry, quiet=True)
    run_study(study_config(tmp_path / "b"), registry, quiet=True, executor="backwards")
    # two waves: the generator arms at both seeds, then the mix arm at both seeds
    assert JOBS_SEEN == [
        [("base", 0), ("aligned", 0), ("base", 1), ("aligned", 1)],
        [("half-half", 0), ("half-half", 1)],
    ]
    assert _study_json(tmp_path / "b") == _study_json(tmp_path / "a")


def test_processes_and_submitit_executors_return_results_in_job_order(tmp_path: Path) -> None:
    registry = Registry.discover(entry_points=False)
    jobs = [3, -1, 2, -5]
    assert registry.create("executor", "processes", {"workers": 2}).map(operator.neg, jobs) == [
        -3,
        1,
        -2,
        5,
    ]
    pytest.importorskip("submitit")
    slurm = create_executor(
        registry, "slurm", {"cluster": "debug"}, default_folder=tmp_path / "submitit"
    )
    assert slurm.map(operator.neg, jobs) == [-3, 1, -2, 5]
    assert (tmp_path / "submitit").is_dir()  # submitit's job folders under the study by default


def test_unknown_executor_or_option_is_a_one_line_error(tmp_path: Path) -> None:
    registry = Registry.discover(entry_points=False)
    with pytest.raises(SaadiError, match="unknown executor kind 'ray'"):
        create_executor(registry, "ray")
    with pytest.raises(SaadiError, match="invalid options for executor 'processes'"):
        create_executor(registry, "processes", {"workerz": 2})
    assert isinstance(
        create_executor(Registry(), "local"), LocalExecutor
    )  # every registry has the built-ins


def test_cli_passes_executor_and_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from saadi_core import cli

    JOBS_SEEN.clear()
    registry = _registry(ExecutorPlugin())
    monkeypatch.setattr(cli, "_registry", lambda: registry)
    file = tmp_path / "study.yaml"
    file.write_text(
        yaml.safe_dump(study_config(tmp_path, seeds=[0], scales=[1]).model_dump(mode="json"))
    )
    cli.main(["--quiet", "study", str(file), "--executor", "backwards"])
    assert len(JOBS_SEEN) == 2 and (tmp_path / "s" / "study.json").is_file()
    with pytest.raises(SystemExit) as exit_info:  # a bad option: the one-line error, exit code 2
        cli.main(
            [
                "--quiet",
                "study",
                str(file),
                "--executor",
                "processes",
                "--executor-option",
                "workerz=2",
            ]
        )
    assert exit_info.value.code == 2
    assert "invalid options for executor 'processes'" in capsys.readouterr().err


class PicklingExecutor:
    """Jobs and outcomes cross a pickle, as they would to a worker process (in this process, so
    the test's fake plugins are there)."""

    in_process = True

    def __init__(self, options: Any, context: Any = None) -> None:
        self.options = options

    def map(self, fn: Any, jobs: Any) -> list[Any]:
        import pickle

        return [
            pickle.loads(pickle.dumps(fn(pickle.loads(pickle.dumps(job)))))
            for job in reversed(jobs)
        ][::-1]


class PicklingPlugin:
    @hookimpl
    def saadi_register_executors(self, register: Any) -> None:
        register(
            "pickling",
            f"{__name__}:PicklingExecutor",
            options=NoOptions,
            description="jobs through pickle",
        )


def test_filter_arms_and_downstream_seeds_run_as_plain_data_jobs(tmp_path: Path) -> None:
    registry = _registry(PicklingPlugin())
    arms = [
        {"name": "base", "generator": "shift"},
        {"name": "filter", "generator": "shift", "filter": True},
        {
            "name": "aligned-filter",
            "generator": "shift",
            "aligner": {"kind": "shrink"},
            "filter": True,
        },
        {"name": "mix", "mix": ["base", "filter"]},
    ]
    extra = {"seeds": [0, 1], "scales": [1], "downstream_seeds": 2, "arms": arms}
    run_study(study_config(tmp_path / "a", **extra), registry, quiet=True)
    summary = run_study(
        study_config(tmp_path / "b", **extra), registry, quiet=True, executor="pickling"
    ).summary
    assert _study_json(tmp_path / "b") == _study_json(tmp_path / "a")
    # (arm, seed) order and the (seed, downstream seed) cells survive the executor
    assert [a["name"] for a in summary["arms"]] == ["base", "filter", "aligned-filter", "mix"]
    assert summary["arms"][1]["downstream"]["1"]["cells"] == ["0/0", "0/100", "1/1", "1/101"]
    rows = {r["arm"]: r for r in summary["evidence"]["rows"]}
    assert (
        rows["aligned-filter"]["vs_filter"]["n_cells"] == 4
        and rows["filter"]["selector_pass"] > rows["base"]["selector_pass"]
    )
    # the mix drew from the filter arm's filtered set, handed over in the first wave's outcome
    import json

    mix_run = tmp_path / "b" / "s" / "runs" / "mix-seed0"
    manifest = json.loads((mix_run / "manifest.json").read_text())
    stage = json.loads(
        (mix_run / manifest["stages"]["downstream-mix-1x-s0"]["path"] / "stage.json").read_text()
    )
    assert {"sample-base", "sample-filter"} <= set(stage["deps"])


def test_local_workers_share_the_cores_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert worker_threads(None, 2) == 4 and worker_threads(None, 16) == 1
    assert worker_threads(3, 2) == 3  # the option wins
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert worker_threads(None, 2) is None  # torch reads the environment's setting


_ORPHAN_STUDY = """
import sys, time
from pathlib import Path
from saadi_core.executors import ProcessesExecutor, ProcessesOptions
import orphan_job

if __name__ == "__main__":
    ProcessesExecutor(ProcessesOptions(workers=1)).map(orphan_job.work, [sys.argv[1]])
"""

_ORPHAN_JOB = """
import os, time
from pathlib import Path

def work(folder):
    Path(folder, "worker.pid").write_text(str(os.getpid()))
    try:
        time.sleep(120)
    except KeyboardInterrupt:
        Path(folder, "interrupted").write_text("the job stopped")
        raise
"""


def test_local_workers_stop_when_the_study_process_is_killed(tmp_path: Path) -> None:
    """SIGTERM to the study process alone (``kill``, a scheduler's limit) must not leave its
    workers computing: each one sees its parent gone and stops."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "orphan_job.py").write_text(_ORPHAN_JOB)
    (tmp_path / "study.py").write_text(_ORPHAN_STUDY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    study = subprocess.Popen([sys.executable, str(tmp_path / "study.py"), str(tmp_path)], env=env)
    pid_file = tmp_path / "worker.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    os.kill(study.pid, signal.SIGTERM)
    study.wait(10)

    # the job is interrupted (as by Ctrl-C: its locks are released) within seconds; the process
    # itself ends after ORPHAN_GRACE_SECONDS (not waited for here)
    deadline = time.monotonic() + 15
    while not (tmp_path / "interrupted").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "interrupted").exists(), f"worker {worker} went on after the study died"
