"""Checks that run before the first stage, so a run fails in seconds, not after training.

Each check raises a one-line :class:`~saadi_core.errors.SaadiError` naming what to change:

* :func:`refuse_multiprocess` — several processes (``torchrun``, ``accelerate launch``) would all
  write the same run store and print different results; until runs are distributed, one process;
* :func:`require_writable` — a runs directory that cannot be written fails before data loads;
* :func:`check_tasks` — a generator or selector registered for another dataset task;
* :func:`check_classes` — a dataset with fewer than two classes gives a selector nothing to tell
  apart (and alignment no pairs).

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

#: environment variables torchrun / accelerate / SLURM launchers set for every process
_WORLD_VARS = ("WORLD_SIZE", "LOCAL_WORLD_SIZE")
_RANK_VARS = ("RANK", "LOCAL_RANK")


def refuse_multiprocess(environ: Mapping[str, str] | None = None) -> None:
    """Raise if this process is one of several launched for one run."""
    env = os.environ if environ is None else environ
    for name in (*_WORLD_VARS, *_RANK_VARS):
        value = env.get(name, "").strip()
        limit = 1 if name in _WORLD_VARS else 0
        if value.isdigit() and int(value) > limit:
            raise SaadiError(
                f"saadi runs in one process for now, but {name}={value} says this is one of several "
                "(torchrun / accelerate launch): every process would write the same run; start saadi directly"
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
    refuse_multiprocess()
    require_writable(Path(config.runs_dir))


def after_data(registry: Registry, config: Any, dataset: Any) -> None:
    """What a run checks once its data is loaded and its components are chosen."""
    check_classes(dataset)
    check_tasks(registry, config, dataset.task)
