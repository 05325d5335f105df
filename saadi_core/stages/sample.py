"""``sample-base`` / ``sample-aligned``: the held-out samples of each variant — the SAME seed and
conditions for both, sized for the largest downstream scale (a smaller scale takes a balanced
prefix). The conditions are the training ones or the dataset's unseen layouts
(``evaluation.conditions``, :mod:`saadi_core.evaluation.conditions`). Base samples depend on
the trained generator only, so a study's base arm and aligned arm of one generator share them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from saadi_core.session import RunSession
from saadi_core.stages.names import ALIGN, TRAIN_GENERATOR, sample_stage
from saadi_core.store import StageResult

INPUTS = (TRAIN_GENERATOR, ALIGN)  # align for the aligned variant only
OUTPUTS = ("samples.pt",)


def params(session: RunSession) -> dict[str, Any]:
    from saadi_core.evaluation.conditions import TRAINING, evaluation_layouts, resolve

    evaluation = session.config.evaluation
    values: dict[str, Any] = {
        "n_per_condition": evaluation.n_per_condition,
        "max_scale": max(evaluation.scales),
        "seed": session.eval_seed,
    }
    conditions = resolve(evaluation.conditions, session.dataset)
    if conditions != TRAINING:  # runs on training conditions keep the keys they had
        values["conditions"] = conditions
    layouts = evaluation_layouts(evaluation, session.dataset)
    if layouts is not None:  # the generator's own pick keeps the keys it had
        values["layouts"] = layouts
    return values


def run(
    session: RunSession, variant: str, trained: StageResult, aligned: StageResult | None = None
) -> StageResult:
    n_train = len(session.dataset.train)
    evaluation = session.config.evaluation
    key = params(session)

    def compute(out: Path) -> dict[str, Any]:
        from saadi_core import distributed
        from saadi_core.evaluation.conditions import evaluation_conditions
        from saadi_core.samples_io import save_samples

        generator = (
            session.load_generator(trained)
            if aligned is None
            else session.aligned_generator(trained, aligned)
        )
        conditions, kind = evaluation_conditions(
            generator, session.dataset, key.get("conditions", "training"), key.get("layouts")
        )
        n = max(
            evaluation.n_per_condition or 0,
            math.ceil(max(evaluation.scales) * n_train / len(conditions)),
        )
        samples = distributed.sample(generator, conditions, n, session.eval_seed)
        save_samples(out, samples)
        return {
            "n_per_condition": n,
            "n_samples": len(samples),
            "seed": session.eval_seed,
            "conditions": kind,
        }

    deps = [trained] if aligned is None else [trained, aligned]
    slots = ("generator",) if aligned is None else ("generator", "aligner")
    return session.stage(sample_stage(variant), key, compute, deps, slots=slots)
