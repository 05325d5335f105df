"""Run store: keys, caching, downstream invalidation, atomicity, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from saadi_core.errors import SaadiError
from saadi_core.store import (
    RunStore,
    StageNotFinished,
    atomic_write_json,
    content_key,
    finished_stage_dir,
)


def _pipeline(store: RunStore, opt_a: int, opt_b: int, calls: list[str]):
    def stage_a(out: Path):
        calls.append("a")
        (out / "a.txt").write_text(str(opt_a))
        return {"value": opt_a}

    def stage_b(out: Path):
        calls.append("b")
        (out / "b.txt").write_text(str(opt_b))
        return {"value": opt_b}

    def stage_c(out: Path):
        calls.append("c")
        return {"value": a.outputs["value"] + b.outputs["value"]}

    a = store.stage("a", {"opt": opt_a}, stage_a)
    b = store.stage("b", {"opt": opt_b}, stage_b, deps=[a])
    c = store.stage("c", {}, stage_c, deps=[a, b])
    return a, b, c


def test_content_key_is_order_independent_and_sensitive():
    assert content_key({"x": 1, "y": 2}) == content_key({"y": 2, "x": 1})
    assert content_key({"x": 1}) != content_key({"x": 2})
    assert content_key(Path("a/b")) == content_key("a/b")


def test_manifest_records_config_versions_and_stages(tmp_path):
    store = RunStore.create(tmp_path, "r1", {"seed": 3}, versions={"saadi": "0.1.0"})
    calls: list[str] = []
    _pipeline(store, 1, 2, calls)
    manifest = json.loads((tmp_path / "r1" / "manifest.json").read_text())
    assert manifest["config"] == {"seed": 3}
    assert manifest["versions"] == {"saadi": "0.1.0"}
    assert {n: s["status"] for n, s in manifest["stages"].items()} == {
        "a": "done",
        "b": "done",
        "c": "done",
    }
    assert all(s["seconds"] >= 0 for s in manifest["stages"].values())
    events = [
        json.loads(l)["event"] for l in (tmp_path / "r1" / "events.jsonl").read_text().splitlines()
    ]
    assert events.count("stage_finished") == 3


def test_rerun_reuses_everything(tmp_path):
    store = RunStore.create(tmp_path, "r", {})
    calls: list[str] = []
    _pipeline(store, 1, 2, calls)
    calls.clear()
    a, b, c = _pipeline(RunStore.create(tmp_path, "r", {}), 1, 2, calls)
    assert calls == []
    assert a.cached and b.cached and c.cached
    assert c.outputs["value"] == 3


def test_changed_option_recomputes_only_downstream(tmp_path):
    store = RunStore.create(tmp_path, "r", {})
    calls: list[str] = []
    _pipeline(store, 1, 2, calls)
    calls.clear()
    _, _, c = _pipeline(store, 1, 5, calls)  # b's option changed: b and c recompute, a does not
    assert calls == ["b", "c"]
    assert c.outputs["value"] == 6
    calls.clear()
    _pipeline(store, 7, 5, calls)  # a changed: everything downstream of a recomputes
    assert calls == ["a", "b", "c"]


def test_failed_stage_leaves_no_result_and_is_marked(tmp_path):
    store = RunStore.create(tmp_path, "r", {})

    def boom(out: Path):
        (out / "partial.bin").write_bytes(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        store.stage("x", {}, boom)
    assert [p for p in store.stages_dir.iterdir() if p.name != ".locks"] == []
    assert store.manifest["stages"]["x"]["status"] == "failed"
    assert "disk on fire" in store.manifest["stages"]["x"]["error"]
    ok = store.stage("x", {}, lambda out: {"fine": True})
    assert not ok.cached and ok.outputs == {"fine": True}


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from saadi_core.store import RunStore
    store = RunStore.create(Path(sys.argv[1]), "r", {})
    calls = Path(sys.argv[2])
    def mark(name):
        with open(calls, "a") as fh:
            fh.write(name + "\\n")
    def first(out):
        mark("first")
        return {"ok": 1}
    def second(out):
        mark("second")
        (out / "big.bin").write_bytes(b"x" * 1000)
        if sys.argv[3] == "hang":
            time.sleep(60)
        return {"ok": 2}
    a = store.stage("first", {}, first)
    store.stage("second", {}, second, deps=[a])
    mark("done")
    """
)


def test_killed_run_resumes_at_first_unfinished_stage(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    calls = tmp_path / "calls.txt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "runs"), str(calls), "hang"]
    )
    deadline = time.time() + 30
    while time.time() < deadline and "second" not in (calls.read_text() if calls.exists() else ""):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stages = tmp_path / "runs" / "r" / "stages"
    finished = [p.name for p in stages.iterdir() if not p.name.startswith(".")]
    assert len(finished) == 1 and finished[0].startswith("first-")
    manifest = json.loads(
        (tmp_path / "runs" / "r" / "manifest.json").read_text()
    )  # still valid JSON
    assert manifest["stages"]["second"]["status"] == "running"

    calls.write_text("")
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs"), str(calls), "quick"], check=True
    )
    assert calls.read_text().split() == ["second", "done"]  # first reused, second recomputed
    assert not list(stages.glob(".tmp-*"))  # the killed stage's temp dir is cleaned on resume


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"v": 1})

    class Unserialisable:
        def __repr__(self):
            raise RuntimeError("cannot")

    with pytest.raises(RuntimeError):
        atomic_write_json(target, {"v": Unserialisable()})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_open_rejects_non_run_dirs_and_bad_names(tmp_path):
    with pytest.raises(SaadiError, match="not a saadi run directory"):
        RunStore.open(tmp_path)
    with pytest.raises(SaadiError, match="invalid run name"):
        RunStore.create(tmp_path, "../escape", {})


def test_finished_stage_dir_says_why_a_stage_cannot_be_read(tmp_path: Path) -> None:
    """Report, pool export and evidence table read results through this one lookup."""
    (tmp_path / "stages" / "score-1").mkdir(parents=True)
    manifest = {
        "stages": {
            "score": {"status": "done", "path": "stages/score-1"},
            "align": {"status": "failed", "path": None, "error": "boom"},
            "pair": {"status": "running"},
            "evaluate": {"status": "done", "path": "stages/evaluate-1"},
        }
    }
    assert finished_stage_dir(tmp_path, manifest, "score") == tmp_path / "stages" / "score-1"
    for stage, reason in [
        ("align", "stage 'align' is failed (boom)"),
        ("pair", "stage 'pair' is running"),
        ("evaluate", "stage 'evaluate' directory stages/evaluate-1 is gone"),
        ("train-selector", "the run has no 'train-selector' stage"),
    ]:
        with pytest.raises(StageNotFinished) as err:
            finished_stage_dir(tmp_path, manifest, stage)
        assert str(err.value) == reason


def test_stage_json_records_the_torch_threads_that_computed_it(tmp_path):
    """The thread count is not in the key, but it changes trained weights (float sums): a reader
    of a reused result must be able to see what computed it."""
    import torch

    store = RunStore.create(tmp_path, "r", {})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        result = store.stage("a", {}, lambda d: {"x": 1})
    finally:
        torch.set_num_threads(before)
    meta = json.loads((result.path / "stage.json").read_text())
    assert meta["torch_threads"] == 1
