"""h, the pass threshold: its default for a pairing that has none, and the stage keys that must
change with it (a cached stage computed at another h would otherwise be reused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from saadi_core.config import RunConfig
from saadi_core.registry import get_registry
from saadi_core.session import RunSession
from saadi_core.stages import align, pool

SEG = {"kind": "toy-seg", "options": {"n_train": 24, "n_test": 6, "n_layouts": 12}}


@pytest.fixture()
def prefs(tmp_path: Path) -> Path:
    path = tmp_path / "prefs.csv"
    path.write_text("winner,loser\n")
    return path


def session(tmp_path: Path, name: str, **config) -> RunSession:
    run = RunSession(
        RunConfig(runs_dir=tmp_path / name, name=name, **config), get_registry(), True, None
    )
    run.store.release()
    return run


def test_a_pairing_without_h_takes_the_tasks_default(tmp_path: Path, prefs: Path) -> None:
    preferences = {"kind": "preferences", "options": {"file": str(prefs)}}
    seg = session(tmp_path, "seg", dataset=SEG, pairing=preferences)
    assert seg.threshold() == 0.9  # Dice scores: the segmentation default, not 0.5
    cls = session(tmp_path, "cls", dataset={"kind": "toy-cls"}, pairing=preferences)
    assert cls.threshold() == 0.5
    assert session(tmp_path, "set", dataset=SEG, evaluation={"threshold": 0.7}).threshold() == 0.7


def test_the_align_key_holds_h_unless_the_pairs_key_does(tmp_path: Path, prefs: Path) -> None:
    default = align.params(session(tmp_path, "a", dataset=SEG))
    assert "validation_threshold" not in default  # h is the pairing's option: in the pair key
    at = {
        h: align.params(session(tmp_path, f"h{h}", dataset=SEG, evaluation={"threshold": h}))
        for h in (0.7, 0.8)
    }
    assert at[0.7]["validation_threshold"] == 0.7 and at[0.8]["validation_threshold"] == 0.8
    preferences = {"kind": "preferences", "options": {"file": str(prefs)}}
    assert (
        align.params(session(tmp_path, "p", dataset=SEG, pairing=preferences))[
            "validation_threshold"
        ]
        == 0.9
    )


def test_an_adaptive_pools_key_holds_h(tmp_path: Path) -> None:
    adaptive = {"min_winners": 2, "max_per_condition": 12}
    keys = [
        pool.params(
            session(
                tmp_path,
                f"h{h}",
                dataset=SEG,
                pool=adaptive,
                pairing={"options": {"threshold": h}},
            )
        )
        for h in (0.8, 0.9)
    ]
    assert keys[0]["threshold"] == 0.8 and keys[1]["threshold"] == 0.9
    assert "threshold" not in pool.params(session(tmp_path, "fixed", dataset=SEG))
