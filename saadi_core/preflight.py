"""Checks that run before the first stage, so a run fails in seconds, not after training.

Each check raises a one-line :class:`~saadi_core.errors.SaadiError` naming what to change:

* :func:`check_launch` — a run on several processes (``torchrun``, ``accelerate launch
  --multi_gpu``; :mod:`saadi_core.distributed`) needs the launcher's full set of variables, and a
  rank without a world size is a half-configured launch, not a run;
* :func:`refuse_launched_study` — ``saadi study`` spreads its runs with ``--executor``, not a
  launcher (every process would write ``study.json``);
* :func:`require_writable` — a runs directory that cannot be written fails before data loads;
* :func:`check_tasks` — a generator or selector registered for another dataset task;
* :func:`check_classes` — a dataset with fewer than two classes gives a selector nothing to tell
  apart (and alignment no pairs);
* evaluation on unseen layouts asked of a dataset that has none
  (:func:`saadi_core.evaluation.conditions.resolve`).

The device name is checked where the config is read (:class:`saadi_core.config.RunConfig`), so
``saadi validate`` catches it too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saadi_core.errors import ConfigError, DataError, SaadiError

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.registry import Registry

#: what torchrun / accelerate launch set for every process of a multi-process run (the process
#: group is initialised from them: ``env://``)
_LAUNCH_VARS = ("RANK", "MASTER_ADDR", "MASTER_PORT")
_RANK_VARS = ("RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def _number(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() else None


def check_launch(environ: Mapping[str, str] | None = None) -> None:
    """Raise if this process looks launched for several processes but cannot join them."""
    env = os.environ if environ is None else environ
    world = _number(env, "WORLD_SIZE") or 1
    if world > 1:
        missing = [name for name in _LAUNCH_VARS if not env.get(name, "").strip()]
        if missing:
            raise SaadiError(
                f"WORLD_SIZE={world} but {', '.join(missing)} not set: start the processes with torchrun or "
                "accelerate launch --multi_gpu, or unset WORLD_SIZE for one process"
            )
        return
    for name in _RANK_VARS:
        value = _number(env, name)
        if value is not None and value > (1 if name == "LOCAL_WORLD_SIZE" else 0):
            raise SaadiError(
                f"{name}={value} but WORLD_SIZE is {env.get('WORLD_SIZE', 'not set')}: a half-configured launch; "
                "start the processes with torchrun or accelerate launch --multi_gpu, or unset it for one process"
            )


def refuse_launched_study(environ: Mapping[str, str] | None = None) -> None:
    """Raise if ``saadi study`` was started under a multi-process launcher."""
    env = os.environ if environ is None else environ
    world = _number(env, "WORLD_SIZE") or 1
    if world > 1:
        raise SaadiError(
            f"saadi study does not run under a launcher (WORLD_SIZE={world}): spread its runs with "
            "--executor processes or slurm, or launch single runs with torchrun"
        )


def require_writable(directory: Path) -> None:
    """Create ``directory`` if needed and check a file can be written in it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise SaadiError(
            f"runs directory {directory} is not writable ({exc.strerror or exc}); choose another with --runs-dir or SAADI_RUNS_DIR"
        ) from None


def task_mismatch(registry: Registry, specs: Mapping[str, Any], task: str | None) -> str | None:
    """A message if a component in ``specs`` (``{"generator": spec, …}``) was registered for
    another task than ``task``; ``None`` when they fit or a task is unknown."""
    if task is None:
        return None
    category_of = {"downstream": "selector"}
    for slot, spec in specs.items():
        kind = getattr(spec, "kind", None)
        if kind is None:
            continue
        needs = registry.get(category_of.get(slot, slot), kind).task
        if needs is not None and needs != task:
            return f"{slot} '{kind}' needs a {needs} dataset, but the dataset is {task}"
    return None


def check_tasks(registry: Registry, config: Any, task: str) -> None:
    """Raise :class:`ConfigError` if the run's generator, selector or downstream model needs
    another task than the loaded dataset's."""
    specs = {slot: getattr(config, slot, None) for slot in ("generator", "selector", "downstream")}
    problem = task_mismatch(registry, specs, task)
    if problem:
        raise ConfigError(f"{problem}; pick components for {task} (see `saadi plugins`)")


def check_classes(dataset: Any) -> None:
    """Raise :class:`DataError` for a dataset with fewer than two classes."""
    if len(dataset.class_names) < 2:
        raise DataError(
            f"dataset '{dataset.name}' ({dataset.source}) has {len(dataset.class_names)} class: a selector needs at "
            "least two classes to tell apart (add a class folder, or a background class to the class map)"
        )


def before_data(config: Any) -> None:
    """What a run checks before loading its data."""
    check_launch()
    require_writable(Path(config.runs_dir))


def after_data(registry: Registry, config: Any, dataset: Any) -> None:
    """What a run checks once its data is loaded and its components are chosen."""
    from saadi_core.evaluation.conditions import evaluation_layouts

    check_classes(dataset)
    check_tasks(registry, config, dataset.task)
    evaluation_layouts(config.evaluation, dataset)  # also checks evaluation.conditions
