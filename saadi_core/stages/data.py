"""``data``: the dataset's description (sizes, classes, counts), keyed by the dataset config and content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saadi_core.session import RunSession
from saadi_core.stages.names import DATA
from saadi_core.store import StageResult, atomic_write_json

NAME = DATA
INPUTS: tuple[str, ...] = ()
OUTPUTS = ("dataset.json",)
#: the config slots whose plugin code computes the stage (their versions are in its key)
SLOTS = ("dataset",)


def params(session: RunSession) -> dict[str, Any]:
    """The dataset config and a fingerprint of what it loaded: the key follows what the files
    hold, so an edited dataset folder recomputes every stage built from it."""
    from saadi_core.data.fingerprint import dataset_fingerprint

    return {
        "dataset": session.config.dataset.model_dump(mode="json"),
        "profile": session.config.profile,
        "content": dataset_fingerprint(session.dataset),
    }


def run(session: RunSession) -> StageResult:
    dataset = session.dataset

    def compute(out: Path) -> dict[str, Any]:
        summary = {
            "source": dataset.source,
            "task": dataset.task,
            "classes": dataset.class_names,
            "train": len(dataset.train),
            "test": len(dataset.test),
            "layouts": 0 if dataset.layouts is None else len(dataset.layouts),
            "image_size": dataset.image_size,
            "train_counts": dataset.class_counts("train"),
        }
        atomic_write_json(out / "dataset.json", summary)
        return summary

    return session.stage(NAME, params(session), compute, slots=SLOTS)
