"""The SAADi loop, in the order of the method; each stage is a module of :mod:`saadi_core.stages`.

1. train the generator (Stage 1) and the selector on the real data;
2. sample the base generator's held-out set;
3. with an aligner: generate a pool, score it with the selector, pair preferred and non-preferred
   samples under the same condition, align the generator (Diffusion-DPO), sample the aligned set;
4. evaluate base vs aligned on the same seeds (pass rates with McNemar, and what evaluation
   plugins add), fidelity, and downstream training on real, real + base, real + aligned.

Every stage is cached and resumable in the run store, keyed by its options, its inputs' keys and
the versions of the code that computes it. The pipeline never imports a plugin: components are
built through the registry by kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saadi_core.config import RunConfig, YamlDoc
from saadi_core.generation import generate
from saadi_core.registry import Registry
from saadi_core.run_summary import alignment_entries, final_entries
from saadi_core.session import (
    RunResult,
    RunSession,
)
from saadi_core.stages import downstream, evaluate, fidelity
from saadi_core.store import atomic_write_json


def run_pipeline(
    config: RunConfig,
    registry: Registry,
    quiet: bool = False,
    doc: YamlDoc | None = None,
    stages_dir: Path | None = None,
    force_stages: Sequence[str] = (),
) -> RunResult:
    """Run (or resume) every stage and write ``summary.json`` into the run directory.

    Without an aligner (``config.aligner`` is ``None``) the loop stops at the base generator's
    samples: no pool, scoring, pairing or alignment. ``stages_dir`` shares stage results with
    other runs (see :meth:`RunStore.create`). ``force_stages`` are recomputed even when cached
    (``saadi run --force-stage NAME``; a family name such as ``sample`` forces every ``sample-*``)."""
    run = RunSession(config, registry, quiet, doc, stages_dir=stages_dir, force_stages=force_stages)
    run.progress.say(
        f"[bold]run[/] {run.store.root} (profile {run.config.profile}, device {run.context.device})"
    )
    sets = generate(run, aligned=run.config.aligner is not None)
    real, selector, samples = sets.real, sets.selector, sets.samples
    summary: dict[str, Any] = {
        "run": str(run.store.root),
        "task": run.dataset.task,
        "components": {k: v.kind for k, v in run.config.components().items()},
        "selector_test": selector.outputs.get("test"),
    }
    if sets.scored is not None and sets.paired is not None and sets.aligned is not None:
        summary |= alignment_entries(sets.scored, sets.paired, sets.aligned)

    evaluate.run(run, samples, selector)
    if run.config.fidelity.metrics != []:
        fidelity.run_all(run, samples, selector)
    variants = [v for v in run.config.evaluation.downstream_variants if v in samples]
    trained_downstream = downstream.run_all(
        run, real, {v: [samples[v]] for v in variants}, selector
    )

    summary |= final_entries(run, list(samples), summary, trained_downstream)
    for name in sorted(set(force_stages) - run.forced_seen):
        run.warn(
            f"--force-stage {name}: this run has no such stage (see the stage names in manifest.json)"
        )
    atomic_write_json(run.store.root / "summary.json", summary)
    run.store.update_manifest(summary_file="summary.json")
    if run.tracker is not None:
        run.tracker.log_summary(summary)
        run.tracker.finish()
    run.store.release()
    return RunResult(
        store=run.store, config=run.config, summary=summary, samples=samples, session=run
    )
