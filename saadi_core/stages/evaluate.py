"""``evaluate``: every variant's held-out samples scored by the selector (and the dataset's
oracle on toy data), then judged by the evaluation plugins (``saadi_evaluate_samples``): the
built-ins give pass rates with the paired McNemar test, and for segmentation label preservation
and class presence; a third-party metric adds its own entries the same way.

The cache key includes the versions of every plugin implementing that hook
(:func:`saadi_core.stages.keys.code_versions`), so installing or upgrading a metric plugin
recomputes this stage — and only this one, as no stage reads its files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saadi_core.evaluation.samples import oracle_pass
from saadi_core.interfaces import Sample
from saadi_core.lifecycle import Evaluation, evaluate_samples
from saadi_core.session import RunSession
from saadi_core.stages.names import EVALUATE, TRAIN_SELECTOR, sample_stage
from saadi_core.store import StageResult, atomic_write_json

NAME = EVALUATE
INPUTS = (sample_stage("base"), sample_stage("aligned"), TRAIN_SELECTOR)
#: per variant: a link to its samples and the per-sample scores and verdicts (report grids)
OUTPUTS = ("<variant>/samples.pt", "<variant>/scores.json")
HOOK = "saadi_evaluate_samples"


def params(session: RunSession) -> dict[str, Any]:
    from saadi_core.evaluation.stats import PAIRED_TESTS

    return {"threshold": session.threshold(), "paired_tests": list(PAIRED_TESTS)}


def run(
    session: RunSession, samples: dict[str, StageResult], selector_stage: StageResult
) -> StageResult:
    threshold = session.threshold()
    dataset = session.dataset

    def compute(out: Path) -> dict[str, Any]:
        from saadi_core.samples_io import SAMPLES_FILE, load_samples

        selector = session.load_selector(selector_stage)
        evaluation = Evaluation(
            dataset=dataset,
            selector=selector,
            samples={},
            scores={},
            selector_pass={},
            oracle_pass={},
            threshold=threshold,
            seed=session.eval_seed,
            warn=session.warn,
        )
        for variant, stage in samples.items():
            (out / variant).mkdir()
            _link_or_copy(stage.path / SAMPLES_FILE, out / variant / SAMPLES_FILE)
            loaded: list[Sample] = load_samples(stage.path)
            scores = selector.score(loaded)
            evaluation.samples[variant], evaluation.scores[variant] = loaded, scores
            evaluation.selector_pass[variant] = [s >= threshold for s in scores]
            evaluation.oracle_pass[variant] = oracle_pass(dataset, loaded)
            # per-sample record (same order as samples.pt): report histograms and grids
            atomic_write_json(
                out / variant / "scores.json",
                {
                    "scores": scores,
                    "threshold": threshold,
                    "selector": evaluation.selector_pass[variant],
                    "oracle": evaluation.oracle_pass[variant],
                    "conditions": [s.condition.id for s in loaded],
                },
            )
        return {"seed": session.eval_seed} | evaluate_samples(session.registry, evaluation)

    deps = [*samples.values(), selector_stage]
    return session.stage(
        NAME, params(session), compute, deps, hooks=(HOOK,), slots=("selector", "dataset")
    )


def _link_or_copy(source: Path, target: Path) -> None:
    """Make a finished stage's file visible in another stage without duplicating its bytes."""
    import os
    import shutil

    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
