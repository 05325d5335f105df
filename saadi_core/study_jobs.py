"""A study's unit of work — one (arm, seed) run, or one mix arm at one seed — as plain data, so an
executor (:mod:`saadi_core.executors`) can run it in this process, in a worker process or on a
cluster node and hand back what ``study.json`` is written from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from saadi_core.config import StudyConfig
from saadi_core.store import StageResult

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.registry import Registry


@dataclass
class ArmJob:
    """Run ``arm`` at ``seed``; a mix arm gets its ``members``' held-out sample stages by arm name.
    ``position`` is "k/total" for the progress line."""

    config: StudyConfig
    arm: str
    seed: int
    quiet: bool = False
    position: str = ""
    members: dict[str, StageResult] = field(default_factory=dict)


@dataclass
class ArmOutcome:
    """What the study keeps of one job: the run's summary with its downstream metrics by downstream
    seed and training set (``by_variant``), and its held-out sample stages by variant, a filter
    arm's filtered set included (a mix arm's inputs)."""

    arm: str
    seed: int
    summary: dict[str, Any]
    samples: dict[str, StageResult]


def run_job(job: ArmJob, registry: Registry | None = None) -> ArmOutcome:
    """Execute ``job`` (a worker without ``registry`` discovers the plugins itself)."""
    from pathlib import Path

    from saadi_core.pipeline import run_pipeline
    from saadi_core.progress import RichProgress
    from saadi_core.registry import Registry
    from saadi_core.study import _by_variant, _mix_run, _stages_dir, arm_label, arm_run_config

    registry = registry or Registry.discover()
    config = job.config
    arm = next(a for a in config.arms if a.name == job.arm)
    say = RichProgress(quiet=job.quiet).say
    if arm.mix is None:
        say(f"[bold]study {config.name}[/]: arm '{arm.name}', seed {job.seed} ({job.position})")
        result = run_pipeline(
            arm_run_config(config, arm, job.seed, registry),
            registry,
            quiet=job.quiet,
            stages_dir=_stages_dir(config),
        )
        summary, samples = result.summary, dict(result.samples)
        if arm.filter:  # in the same job: its stages are the run's, cached a moment ago
            from saadi_core.filter_arm import run_filter_arm

            label = arm_label(arm, registry)
            summary, samples[label] = run_filter_arm(result.session, label, arm.aligner is not None)  # type: ignore[arg-type]
        return ArmOutcome(
            arm.name, job.seed, summary | {"by_variant": _by_variant(Path(summary["run"]))}, samples
        )
    say(
        f"[bold]study {config.name}[/]: mix '{arm.name}' = {' + '.join(arm.mix)}, seed {job.seed} ({job.position})"
    )
    mixed = _mix_run(config, arm, job.seed, job.members, registry, job.quiet)
    return ArmOutcome(
        arm.name, job.seed, mixed | {"by_variant": _by_variant(Path(mixed["run"]))}, {}
    )
