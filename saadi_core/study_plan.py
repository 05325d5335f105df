"""How ``saadi study`` lays its runs out as jobs and hands them to an executor.

Two waves: every generator arm at every seed (independent runs that meet only in the shared
stage store), then every mix arm at every seed (it needs its members' samples from wave one).
In this process (``local``) the jobs run seed by seed, as they always did. Elsewhere they are
handed out arm by arm, so the first jobs running side by side are different seeds of one arm —
runs that share nothing — and the jobs that reuse a seed's generator (its aligned arm) come
after it. Results are put back in (arm, seed) order, so ``study.json`` is the same whatever ran
where or when.
"""

from __future__ import annotations

import functools
from typing import Any

from saadi_core.config import StudyConfig
from saadi_core.executors import create_executor
from saadi_core.registry import Registry
from saadi_core.study_jobs import ArmJob, ArmOutcome, run_job


def execute_study(
    config: StudyConfig,
    registry: Registry,
    quiet: bool,
    executor: str,
    executor_options: dict[str, Any],
) -> tuple[dict[str, dict[int, dict[str, Any]]], str]:
    """Run every job; returns ``per_seed[arm][seed]`` = run summary with ``by_variant``, and the task."""
    from saadi_core.study import arm_label

    runner = create_executor(
        registry,
        executor,
        executor_options,
        default_folder=config.runs_dir / config.name / "submitit",
    )
    fn = functools.partial(run_job, registry=registry) if runner.in_process else run_job
    generator_arms = [a for a in config.arms if a.mix is None]
    mix_arms = [a for a in config.arms if a.mix is not None]
    total = len(config.arms) * len(config.seeds)
    if runner.in_process:
        order = [(arm, seed) for seed in config.seeds for arm in generator_arms]
    else:
        order = [(arm, seed) for arm in generator_arms for seed in config.seeds]
    jobs = [
        ArmJob(config, arm.name, seed, quiet, f"{i}/{total}")
        for i, (arm, seed) in enumerate(order, 1)
    ]
    outcomes: dict[tuple[str, int], ArmOutcome] = {(o.arm, o.seed): o for o in runner.map(fn, jobs)}
    if mix_arms:
        mix_jobs = []
        for i, (arm, seed) in enumerate(
            ((a, s) for s in config.seeds for a in mix_arms), len(jobs) + 1
        ):
            members = {}
            for name in arm.mix or []:
                member = next(a for a in config.arms if a.name == name)
                members[name] = outcomes[(name, seed)].samples[arm_label(member, registry)]
            mix_jobs.append(ArmJob(config, arm.name, seed, quiet, f"{i}/{total}", members))
        outcomes |= {(o.arm, o.seed): o for o in runner.map(fn, mix_jobs)}
    per_seed = {
        arm.name: {seed: outcomes[(arm.name, seed)].summary for seed in config.seeds}
        for arm in config.arms
    }
    task = next(iter(outcomes.values())).summary["task"]
    return per_seed, task
