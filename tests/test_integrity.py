"""Cache integrity and concurrency of the run store, as real processes (issue 17, cases 4 and 5).

A tiny fake two-stage pipeline (no torch) runs through :class:`RunStore` in subprocesses: damaged
cached files are detected and recomputed with a warning naming the file; two processes on one run
directory are refused clearly; workers sharing a stage store compute a stage once; a lock left by
a killed process does not block.
"""

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

from saadi_core.integrity import checksum_tree, verify_tree
from saadi_core.store import RunStore

FAKE_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from saadi_core.errors import SaadiError
    from saadi_core.store import RunStore
    runs, name, stages, calls, pause = sys.argv[1:6]
    def mark(what):
        with open(calls, "a") as fh:
            fh.write(what + "\\n")
    def model(out):
        mark(f"model {name}")
        time.sleep(float(pause))
        (out / "model.pt").write_bytes(bytes(range(256)) * 40)
        return {"bytes": 10240}
    def scores(out):
        mark(f"scores {name}")
        data = (a.path / "model.pt").read_bytes()
        assert len(data) == 10240, "read a damaged model"
        (out / "scores.json").write_text('{"scores": [0.5]}')
        return {"n": 1}
    try:
        store = RunStore.create(Path(runs), name, {}, stages_dir=None if stages == "-" else Path(stages))
        a = store.stage("train", {}, model)
        store.stage("score", {}, scores, deps=[a])
    except SaadiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    mark(f"done {name}")
    """
)


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    calls = tmp_path / "calls.txt"

    def start(name: str = "r", stages: str = "-", pause: float = 0.0) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(tmp_path / "runs"),
                name,
                stages,
                str(calls),
                str(pause),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(**kw) -> subprocess.CompletedProcess:
        proc = start(**kw)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def lines() -> list[str]:
        return calls.read_text().splitlines() if calls.exists() else []

    def wait_for(text: str) -> None:
        deadline = time.time() + 30
        while text not in lines() and time.time() < deadline:
            time.sleep(0.02)
        assert text in lines()

    start.run, start.lines, start.wait_for, start.calls = run, lines, wait_for, calls  # type: ignore[attr-defined]
    return start


def _stage_dir(root: Path, name: str) -> Path:
    return next(p for p in root.iterdir() if p.name.startswith(f"{name}-"))


def test_damaged_cached_files_are_recomputed_with_a_warning(fake, tmp_path):
    assert fake.run().returncode == 0
    stages = tmp_path / "runs" / "r" / "stages"
    model, meta = (
        _stage_dir(stages, "train") / "model.pt",
        _stage_dir(stages, "score") / "stage.json",
    )
    model.write_bytes(model.read_bytes()[:100])  # a truncated model
    meta.write_text(meta.read_text()[:20])  # a truncated stage.json
    fake.calls.write_text("")
    again = fake.run()
    assert again.returncode == 0, again.stderr
    assert (
        f"damaged: {model} has 100 bytes" in again.stderr
        and f"{meta} cannot be read" in again.stderr
    )
    assert fake.lines() == ["model r", "scores r", "done r"]
    fake.calls.write_text("")
    assert fake.run().stderr == "" and fake.lines() == ["done r"]  # and then found intact


@pytest.mark.parametrize("damage", ["edit", "delete"])
def test_edited_or_missing_output_fails_verification(tmp_path, damage, capsys):
    store = RunStore.create(tmp_path, "r", {})
    calls = []

    def scores(out: Path):
        calls.append(1)
        (out / "scores.json").write_text('{"scores": [0.5]}')

    first = store.stage("score", {}, scores)
    target = first.path / "scores.json"
    target.write_text(
        '{"scores": [0.9]}'
    ) if damage == "edit" else target.unlink()  # same size when edited
    again = store.stage("score", {}, scores)
    assert not again.cached and len(calls) == 2
    assert str(target) in capsys.readouterr().err
    assert (again.path / "scores.json").read_text() == '{"scores": [0.5]}'


def test_checksums_are_written_in_stage_json(fake, tmp_path):
    assert fake.run().returncode == 0
    train = _stage_dir(tmp_path / "runs" / "r" / "stages", "train")
    meta = json.loads((train / "stage.json").read_text())
    assert meta["checksums"]["model.pt"]["size"] == 10240
    assert verify_tree(train, meta["checksums"]) is None
    assert checksum_tree(train, exclude=("stage.json",)) == meta["checksums"]


def test_second_process_on_the_same_run_is_refused_clearly(fake):
    first = fake(pause=30)
    fake.wait_for("model r")
    second = fake.run()
    first.kill()
    first.wait()
    assert second.returncode == 2
    assert (
        second.stderr.startswith("error: run directory")
        and f"in use by pid {first.pid}" in second.stderr
    )
    assert second.stderr.count("\n") == 1


def test_lock_of_a_killed_process_does_not_block(fake, tmp_path):
    first = fake(pause=30)
    fake.wait_for("model r")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    started = time.perf_counter()
    again = fake.run()
    assert again.returncode == 0, again.stderr
    assert time.perf_counter() - started < 20
    stages = tmp_path / "runs" / "r" / "stages"
    assert not list(stages.glob(".tmp-*"))  # the killed stage's leftover is cleaned


def test_workers_sharing_a_stage_store_compute_each_stage_once(fake, tmp_path):
    shared = str(tmp_path / "shared")
    workers = [fake(name=f"w{i}", stages=shared, pause=0.5) for i in range(3)]
    results = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], results
    lines = fake.lines()
    assert sum(line.startswith("model ") for line in lines) == 1
    assert sum(line.startswith("scores ") for line in lines) == 1
    assert sorted(line for line in lines if line.startswith("done")) == [
        "done w0",
        "done w1",
        "done w2",
    ]
    assert any("waiting" in err for _out, err in results)


def test_changed_config_sets_old_results_aside(tmp_path):
    store = RunStore.create(tmp_path, "r", {"seed": 1})
    (store.root / "summary.json").write_text("{}")
    RunStore.create(tmp_path, "r", {"seed": 1})
    assert (store.root / "summary.json").is_file()  # same config: results stay
    again = RunStore.create(tmp_path, "r", {"seed": 2})
    assert not (store.root / "summary.json").exists()
    assert (store.root / "previous" / "summary.json").is_file()
    assert again.manifest["previous_results"]["config"] == {"seed": 1}


def test_damaged_manifest_is_replaced_not_fatal(tmp_path, capsys):
    store = RunStore.create(tmp_path, "r", {})
    (store.root / "manifest.json").write_text('{"name": "r", "sta')
    again = RunStore.create(tmp_path, "r", {"x": 1})
    assert again.manifest["config"] == {"x": 1}
    assert (store.root / "manifest.json.damaged").is_file()
    assert "manifest.json" in capsys.readouterr().err
