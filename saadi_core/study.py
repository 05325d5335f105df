"""``saadi study``: several arms on one dataset, the same real splits, seeds and downstream model.

An arm is a generator (base, or aligned by its aligner) or a *mix* of other arms' synthetic sets.
Every (arm, seed) is an ordinary run (``<study>/runs/<arm>-seed<k>/``) whose stages live in one
shared ``<study>/stages/`` directory, so what arms have in common is computed once: two arms with
the same generator train it once and share its base samples, pool and scores; the real-only
downstream model of a seed is trained once for all arms. A mix arm trains only its downstream
models, on equal shares of its members' synthetic sets.

A *filter* arm (``filter: true``) is a generator arm whose samples are then filtered by the
selector (:mod:`saadi_core.filter_arm`), in the same job as its run.

The study seed is the run seed *and* the first downstream seed: one replicate of the whole loop
per seed, with ``downstream_seeds`` downstream models each (seeds s, s+100, …). Results
(``study.json``) give per arm and scale the mean ± std over (seed, downstream seed) cells of the
downstream metric, and the paired difference to real-only per cell with a t-based 95 % confidence
interval — a difference whose interval contains 0 is reported as "no significant difference" —
and the evidence table (:mod:`saadi_core.evidence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saadi_core.config import ArmConfig, EvaluationConfig, RunConfig, StudyConfig, YamlDoc
from saadi_core.evaluation.stats import interval_verdict, paired_interval
from saadi_core.registry import Registry
from saadi_core.session import RunSession
from saadi_core.stages import data, train
from saadi_core.stages.downstream import aggregate
from saadi_core.stages.downstream import run_all as train_downstream
from saadi_core.store import StageResult, atomic_write_json

STUDY_FILE = "study.json"


@dataclass
class StudyResult:
    """What ``saadi study`` hands to the CLI: where it wrote and ``study.json``'s content."""

    root: Path
    summary: dict[str, Any]


def arm_label(arm: ArmConfig, registry: Registry) -> str:
    """The synthetic set an arm contributes — its base or aligned samples, its mix, or what a
    plugin's arm kind names (``saadi_study_arm_label``)."""
    from saadi_core.lifecycle import study_arm_label

    return study_arm_label(registry, arm)


def arm_run_config(study: StudyConfig, arm: ArmConfig, seed: int, registry: Registry) -> RunConfig:
    """The run config of one generator arm at one seed (a mix arm uses its first member's)."""
    return RunConfig(
        name=f"{arm.name}-seed{seed}",
        profile=study.profile,
        seed=seed,
        runs_dir=study.runs_dir / study.name / "runs",
        device=study.device,
        dataset=study.dataset,
        generator=arm.generator,
        selector=study.selector,
        pairing=study.pairing,
        aligner=arm.aligner,
        downstream=study.downstream,
        pool=study.pool,
        fidelity=study.fidelity,
        log_with=study.log_with,
        strict_keys=study.strict_keys,
        evaluation=EvaluationConfig(
            scales=study.scales,
            downstream_seeds=downstream_seeds(study, seed),
            downstream_budget=study.downstream_budget,
            downstream_real=study.downstream_real,
            conditions=study.evaluation_conditions,
            layouts=study.evaluation_layouts,
            # a filter arm trains its own downstream models after the run (saadi_core.filter_arm)
            downstream_variants=[arm_label(arm, registry)]
            if arm.mix is None and not arm.filter
            else [],
        ),
    )


def downstream_seeds(study: StudyConfig, seed: int) -> list[int]:
    """The downstream seeds of one study seed: the seed itself, then +100, +200, …"""
    return [seed + 100 * j for j in range(study.downstream_seeds)]


def _mix_run(
    study: StudyConfig,
    arm: ArmConfig,
    seed: int,
    members: dict[str, StageResult],
    registry: Registry,
    quiet: bool,
) -> dict[str, Any]:
    """Downstream models of a mix arm at one seed: equal shares of its members' sets
    (``members``: each member arm's held-out sample stage)."""
    first = next(a for a in study.arms if a.name == arm.mix[0])
    config = arm_run_config(study, first, seed, registry).model_copy(
        update={"name": f"{arm.name}-seed{seed}", "aligner": None}
    )
    session = RunSession(config, registry, quiet, None, stages_dir=_stages_dir(study))
    real = data.run(session)
    selector_stage = train.run_selector(session, real)
    sources = [members[name] for name in arm.mix]
    results = train_downstream(session, real, {arm.name: sources}, selector_stage)
    summary = {
        "run": str(session.store.root),
        "task": session.dataset.task,
        "mix": arm.mix,
        "downstream": aggregate(results, session.dataset.task),
        "timings_s": {
            n: s.get("seconds") for n, s in session.store.manifest.get("stages", {}).items()
        },
    }
    atomic_write_json(session.store.root / "summary.json", summary)
    return summary


def _stages_dir(study: StudyConfig) -> Path:
    return study.runs_dir / study.name / "stages"


def summarise(
    study: StudyConfig,
    per_seed: dict[str, dict[int, dict[str, Any]]],
    task: str,
    registry: Registry,
) -> dict[str, Any]:
    """``study.json``: per arm and scale mean ± std over (study seed × downstream seed) cells,
    paired differences to real-only, and the evidence table (:mod:`saadi_core.evidence`)."""
    import numpy as np

    from saadi_core.evidence import evidence_table

    metric = "macro_f1" if task == "classification" else "mean_dice"
    per_class_key = "per_class_f1" if task == "classification" else "per_class_dice"
    real_by_cell: dict[tuple[int, str], float] = {}  # the same model in every arm (a shared stage)
    for runs in per_seed.values():
        for seed, run in runs.items():
            for ds, by_variant in run["by_variant"].items():
                real_by_cell.setdefault((seed, ds), by_variant["real"][metric])
    real_values = [real_by_cell[c] for c in sorted(real_by_cell)]
    arms_out, comparisons = [], []
    trained_downstream = study.downstream_seeds > 0
    for arm in study.arms:
        label = arm_label(arm, registry)
        runs = per_seed[arm.name]
        downstream: dict[str, Any] = {}
        for scale in study.scales if trained_downstream else []:
            key = f"real+{label}@{scale:g}x"
            values = {
                (s, ds): v[key]
                for s, r in runs.items()
                for ds, v in r["by_variant"].items()
                if key in v
            }
            scores = [values[c][metric] for c in sorted(values)]
            classes = sorted({c for v in values.values() for c in v.get(per_class_key, {})})
            downstream[f"{scale:g}"] = {
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores)),
                "values": scores,
                "cells": [f"{s}/{ds}" for s, ds in sorted(values)],
                "per_class": {
                    c: float(np.mean([v[per_class_key][c] for v in values.values()]))
                    for c in classes
                },
            }
            differences = [values[c][metric] - real_by_cell[c] for c in sorted(values)]
            interval = paired_interval(differences)
            comparisons.append(
                {
                    "arm": arm.name,
                    "scale": scale,
                    "vs": "real",
                    "difference": float(np.mean(differences)),
                    "ci95": list(interval) if interval else None,
                    "n_seeds": len(differences),
                    "verdict": interval_verdict(interval),
                }
            )
        arms_out.append(
            {
                "name": arm.name,
                "generator": arm.generator.kind if arm.generator else None,
                "aligned": arm.aligner is not None,
                "filter": arm.filter,
                "mix": arm.mix,
                "runs": {str(s): r["run"] for s, r in runs.items()},
                "downstream": downstream,
                "pass_rates": {
                    str(s): {
                        k: r[k]
                        for k in (
                            "selector_pass",
                            "oracle_pass",
                            "pass_rates",
                            "label_preservation",
                        )
                        if r.get(k) is not None
                    }
                    for s, r in runs.items()
                },
            }
        )
    return {
        "name": study.name,
        "task": task,
        "metric": metric,
        "seeds": study.seeds,
        "downstream_seeds": study.downstream_seeds,
        "scales": study.scales,
        "evaluation_conditions": study.evaluation_conditions,
        "evaluation_layouts": study.evaluation_layouts,
        "real_only": {
            "mean": float(np.mean(real_values)),
            "std": float(np.std(real_values)),
            "values": real_values,
        }
        if real_values
        else None,
        "arms": arms_out,
        "comparisons": comparisons,
        "evidence": evidence_table(
            study,
            per_seed,
            task,
            real_by_cell,
            {a.name: arm_label(a, registry) for a in study.arms},
        ),
    }


def run_study(
    config: StudyConfig,
    registry: Registry,
    quiet: bool = False,
    doc: YamlDoc | None = None,
    executor: str = "local",
    executor_options: dict[str, Any] | None = None,
) -> StudyResult:
    """Run (or resume) every arm at every seed on ``executor`` (:mod:`saadi_core.executors`),
    then write ``<runs_dir>/<name>/study.json``."""
    from saadi_core.preflight import refuse_launched_study
    from saadi_core.study_plan import execute_study

    refuse_launched_study()
    root = config.runs_dir / config.name
    per_seed, task = execute_study(config, registry, quiet, executor, executor_options or {})
    summary = summarise(config, per_seed, task, registry)
    atomic_write_json(root / STUDY_FILE, summary)
    return StudyResult(root=root, summary=summary)


def _by_variant(run_root: Path) -> dict[str, dict[str, Any]]:
    """The run's downstream metrics by downstream seed, then by training set."""
    import json

    return json.loads((run_root / "downstream.json").read_text(encoding="utf-8"))
