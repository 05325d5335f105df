"""``evaluate``: selector (and oracle) pass rates of each variant's held-out samples; with an
aligned variant, the paired base-vs-aligned test (exact McNemar) — the evidence that alignment
changed the images; for segmentation also class presence and label preservation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saadi_core.evaluation.samples import (
    label_counts,
    label_preservation,
    oracle_pass,
    paired_groups,
)
from saadi_core.interfaces import Sample
from saadi_core.session import RunSession
from saadi_core.stages.names import EVALUATE, TRAIN_SELECTOR, sample_stage
from saadi_core.store import StageResult, atomic_write_json

NAME = EVALUATE
INPUTS = (sample_stage("base"), sample_stage("aligned"), TRAIN_SELECTOR)
#: per variant: a link to its samples and the per-sample scores and verdicts (report grids)
OUTPUTS = ("<variant>/samples.pt", "<variant>/scores.json")


def params(session: RunSession) -> dict[str, Any]:
    return {"threshold": session.threshold()}


def run(session: RunSession, samples: dict[str, StageResult], selector_stage: StageResult) -> StageResult:
    threshold = session.threshold()
    dataset = session.dataset

    def compute(out: Path) -> dict[str, Any]:
        from saadi_core.evaluation.stats import mcnemar_exact
        from saadi_core.samples_io import SAMPLES_FILE, load_samples

        selector = session.load_selector(selector_stage)
        results: dict[str, Any] = {"seed": session.eval_seed}
        passes: dict[str, dict[str, Any]] = {}
        counts: dict[str, Any] = {}
        loaded_by_variant: dict[str, list[Sample]] = {}
        for variant, stage in samples.items():
            (out / variant).mkdir()
            _link_or_copy(stage.path / SAMPLES_FILE, out / variant / SAMPLES_FILE)
            loaded = loaded_by_variant[variant] = load_samples(stage.path)
            scores = selector.score(loaded)
            passes[variant] = {"selector": [s >= threshold for s in scores], "oracle": oracle_pass(dataset, loaded)}
            # per-sample record (same order as samples.pt): report histograms and grids
            atomic_write_json(out / variant / "scores.json", {"scores": scores, "threshold": threshold} | passes[variant])
            oracle = passes[variant]["oracle"]
            results[variant] = {
                "n": len(scores),
                "mean_score": sum(scores) / len(scores),
                "selector_rate": sum(passes[variant]["selector"]) / len(scores),
                "oracle_rate": None if oracle is None else sum(oracle) / len(oracle),
            }
            if dataset.task == "segmentation" and all(s.mask is not None for s in loaded):
                counts[variant] = label_counts(selector, loaded, dataset.num_classes)
        if "aligned" in passes:
            results["selector_pass"] = mcnemar_exact(passes["base"]["selector"], passes["aligned"]["selector"])
            if passes["base"]["oracle"] is not None:
                results["oracle_pass"] = mcnemar_exact(passes["base"]["oracle"], passes["aligned"]["oracle"])
        if dataset.task == "segmentation":
            results["class_presence"], warnings = class_presence(session, loaded_by_variant)
            results["warnings"] = warnings
        if counts:
            groups = paired_groups(loaded_by_variant["base"], loaded_by_variant["aligned"]) if "aligned" in counts else None
            results["label_preservation"] = label_preservation(counts, dataset.class_names, groups, seed=session.eval_seed)
        return results

    return session.stage(NAME, params(session), compute, [*samples.values(), selector_stage])


def class_presence(session: RunSession, samples: dict[str, list[Sample]]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Class presence of real training masks and of each variant's samples, with a warning per
    class alignment dropped (see :func:`saadi_core.evaluation.metrics.presence_drops`)."""
    from saadi_core.evaluation.metrics import class_presence as presence_of
    from saadi_core.evaluation.metrics import presence_drops

    names = session.dataset.class_names
    presence = {"real": presence_of(session.dataset.train.masks, names)}
    for variant, loaded in samples.items():
        masks = [s.mask.numpy() for s in loaded if s.mask is not None]
        if masks:
            presence[variant] = presence_of(masks, names)
    warnings = presence_drops(presence)
    for warning in warnings:
        session.warn(warning)
    return presence, warnings


def _link_or_copy(source: Path, target: Path) -> None:
    """Make a finished stage's file visible in another stage without duplicating its bytes."""
    import os
    import shutil

    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
