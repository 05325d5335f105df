"""``train-generator`` and ``train-selector``: Stage 1 and the selector, both on real data only.

Each is keyed by its component's kind, validated options and profile, and writes the model the
component saves (``model/``) for later stages to load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saadi_core.session import RunSession
from saadi_core.stages.names import DATA, TRAIN_GENERATOR, TRAIN_SELECTOR
from saadi_core.store import StageResult

INPUTS: tuple[str, ...] = (DATA,)
OUTPUTS = ("model/",)


def run_generator(session: RunSession, data: StageResult) -> StageResult:
    def compute(out: Path) -> dict[str, Any]:
        generator = session.create("generator")
        generator.fit(session.dataset)
        generator.save(out / "model")
        return {"kind": generator.kind}

    return session.stage(
        TRAIN_GENERATOR, session.params("generator"), compute, [data], slots=("generator",)
    )


def run_selector(session: RunSession, data: StageResult) -> StageResult:
    """The selector, with its F1 or Dice on the real test split as the stage's ``test`` output."""

    def compute(out: Path) -> dict[str, Any]:
        selector = session.create("selector")
        selector.fit(session.dataset)
        selector.save(out / "model")
        return {"test": session.evaluate_model(selector)}

    return session.stage(
        TRAIN_SELECTOR, session.params("selector"), compute, [data], slots=("selector",)
    )
