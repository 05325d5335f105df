"""``downstream-*``: the downstream model trained on real data, and on real + ``scale × |train|``
synthetic samples of each variant (or a study's mix), for every downstream seed; F1 or Dice on
the real test split. :func:`aggregate` turns the per-seed results into mean ± std and paired
differences to real-only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from saadi_core.data.dataset import Dataset
from saadi_core.interfaces import Sample
from saadi_core.session import RunSession
from saadi_core.stages.names import DATA, TRAIN_SELECTOR, downstream_stage, sample_stage
from saadi_core.store import StageResult, atomic_write_json

INPUTS = (
    DATA,
    sample_stage("base"),
    sample_stage("aligned"),
    TRAIN_SELECTOR,
)  # the selector when reused
OUTPUTS: tuple[str, ...] = ()  # the metrics are the stage's outputs
T = TypeVar("T")


def params(session: RunSession, seed: int, scale: float | None) -> dict[str, Any]:
    key = session.params("downstream") | {"seed": seed, "scale": scale}
    if scale is not None:  # real-only trains the same under either budget
        key["budget"] = session.config.evaluation.downstream_budget
    if session.config.evaluation.downstream_real is not None:
        key["real"] = session.config.evaluation.downstream_real
    return key


def real_data(session: RunSession) -> Dataset:
    """The dataset a downstream model trains on: the run's, with its train split cut to
    ``evaluation.downstream_real`` images — the first of every class in turn (round-robin, so
    the classes stay balanced and a smaller cut is a prefix of a larger one)."""
    n = session.config.evaluation.downstream_real
    dataset = session.dataset
    if n is None or n >= len(dataset.train):
        return dataset
    labels = dataset.train.labels
    if labels is None:  # segmentation: no class per image
        index = list(range(n))
    else:
        index = round_robin([np.flatnonzero(labels == c) for c in np.unique(labels)])[:n]
    return replace(dataset, train=dataset.train.subset(sorted(index)))


def run_one(
    session: RunSession,
    data: StageResult,
    label: str,
    sources: Sequence[StageResult],
    scale: float,
    seed: int,
    selector_stage: StageResult,
) -> StageResult:
    """One downstream model: trained on real data plus ``scale × |train|`` synthetic samples
    drawn equally from ``sources`` (one for base or aligned, several for a study's mix),
    evaluated on the real test split. Real-only (no sources) has the same key in every arm
    of a study, so it is trained once per seed."""
    reuse = (
        not sources
        and session.config.evaluation.downstream_real is None
        and selector_is_downstream(session, seed)
    )

    def compute(out: Path) -> dict[str, Any]:
        if reuse:
            # same kind, options and seed on the same real data: the selector's test result
            # is this model's (training is deterministic per seed)
            session.progress.say(f"[bold]downstream[/]: real (seed {seed}) = the trained selector")
            return {
                "metrics": selector_stage.outputs["test"],
                "n_synthetic": 0,
                "reused": TRAIN_SELECTOR,
            }
        dataset = real_data(session)
        extra = synthetic(session, sources, scale, len(dataset.train))
        session.progress.say(
            f"[bold]downstream[/]: {variant_key(label, scale, bool(sources))} (seed {seed}, {len(extra)} synthetic)"
        )
        model = session.create("downstream")
        update: dict[str, Any] = {}
        fields = type(model.options).model_fields
        if "seed" in fields:
            update["seed"] = seed
        if session.config.evaluation.downstream_budget == "steps" and "epochs" in fields:
            update["epochs"] = equal_step_epochs(
                model.options.epochs, len(dataset.train), len(extra)
            )
        model.options = model.options.model_copy(update=update)
        model.fit(dataset, extra=extra)
        return {
            "metrics": session.evaluate_model(model),
            "n_real": len(dataset.train),
            "n_synthetic": len(extra),
            **({"epochs": update["epochs"]} if "epochs" in update else {}),
        }

    deps = [data, *sources, *([selector_stage] if reuse else [])]
    name = downstream_stage(label, scale if sources else None, seed)
    return session.stage(
        name,
        params(session, seed, scale if sources else None),
        compute,
        deps,
        slots=("downstream",),
    )


def equal_step_epochs(epochs: int, n_real: int, n_synthetic: int) -> int:
    """Epochs over ``n_real + n_synthetic`` images that make about as many optimiser steps as
    ``epochs`` over the ``n_real`` alone (at least one)."""
    return max(1, round(epochs * n_real / (n_real + n_synthetic)))


def run_all(
    session: RunSession,
    data: StageResult,
    sources: dict[str, Sequence[StageResult]],
    selector_stage: StageResult,
) -> dict[str, dict[str, Any]]:
    """Real-only and every synthetic set at every scale, for every downstream seed:
    ``{seed: {"real" | "real+<label>@<scale>x": metrics}}`` (also written to the run.s
    ``downstream.json``)."""
    results: dict[str, dict[str, Any]] = {}
    for seed in session.config.evaluation.downstream_seeds:
        by_variant = results.setdefault(str(seed), {})
        by_variant["real"] = run_one(session, data, "real", (), 1.0, seed, selector_stage).outputs[
            "metrics"
        ]
        for scale in session.config.evaluation.scales:
            for label, stages in sources.items():
                stage = run_one(session, data, label, stages, scale, seed, selector_stage)
                by_variant[variant_key(label, scale, True)] = stage.outputs["metrics"]
    atomic_write_json(session.store.root / "downstream.json", results)
    return results


def selector_is_downstream(session: RunSession, seed: int) -> bool:
    """Whether training the downstream model with ``seed`` on the real data alone repeats
    the train-selector stage."""
    options = session.options["downstream"]
    if "seed" in type(options).model_fields:
        options = options.model_copy(update={"seed": seed})
    return (
        session.config.downstream.kind == session.config.selector.kind
        and options == session.options["selector"]
    )


def synthetic(
    session: RunSession, sources: Sequence[StageResult], scale: float, n_real: int
) -> list[Sample]:
    """``scale × n_real`` samples, an equal share from each source, balanced over conditions."""
    from saadi_core.samples_io import load_samples

    total = round(scale * n_real)
    chosen: list[Sample] = []
    for i, source in enumerate(sources):
        share = total // len(sources) + (1 if i < total % len(sources) else 0)
        chosen.extend(balanced_subset(load_samples(source.path), share))
    return chosen


def balanced_subset(samples: Sequence[Sample], n: int) -> list[Sample]:
    """``n`` samples taking the same number from every condition (round-robin by index), so a
    smaller scale is a prefix of a larger one and every class is represented."""
    by_condition: dict[str, list[Sample]] = {}
    for s in samples:
        by_condition.setdefault(s.condition.id, []).append(s)
    return round_robin(list(by_condition.values()))[:n]


def round_robin(groups: Sequence[Sequence[T]]) -> list[T]:
    """The first item of every group, then the second of every group, …: any prefix takes about
    as many from each group (a balanced subset of every size)."""
    depth = max((len(group) for group in groups), default=0)
    return [group[i] for i in range(depth) for group in groups if i < len(group)]


def variant_key(label: str, scale: float, synthetic: bool) -> str:
    """How a downstream training set is named in results: ``real`` or ``real+base@1x``."""
    return f"real+{label}@{scale:g}x" if synthetic else "real"


def aggregate(results: dict[str, dict[str, Any]], task: str) -> dict[str, Any]:
    """Mean ± std over downstream seeds of the headline metric per training set, and for every
    synthetic set the paired difference to real-only (same seed) with its 95 % t interval."""
    import numpy as np

    from saadi_core.evaluation.stats import interval_verdict, paired_interval

    metric = "macro_f1" if task == "classification" else "mean_dice"
    variants = sorted({k for by_variant in results.values() for k in by_variant})
    out: dict[str, Any] = {"metric": metric}
    for variant in variants:
        values = [r[variant][metric] for r in results.values() if variant in r]
        out[variant] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values)),
            "n_seeds": len(values),
        }
        if variant != "real":
            differences = [
                r[variant][metric] - r["real"][metric]
                for r in results.values()
                if variant in r and "real" in r
            ]
            interval = paired_interval(differences)
            out[variant]["vs_real"] = {
                "difference": float(np.mean(differences)),
                "ci95": list(interval) if interval else None,
                "verdict": interval_verdict(interval),
            }
    return out
