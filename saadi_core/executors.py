"""Where a study's runs execute: the ``executor`` plugin category.

A study is a list of independent jobs (one ordinary run per arm and seed; then the mix arms, which
need their members' samples). An executor maps a picklable function over such jobs and returns
the results in job order; the study writes ``study.json`` from them, so the result does not depend
on where or in which order the jobs ran. Jobs that need the same stage (two arms sharing a
generator, every arm's real-only downstream model) meet in the shared stage store, whose per-stage
file lock lets one worker compute a stage while the others wait and reuse it.

Built-in kinds (registered by :mod:`saadi_core.builtins.executors` through the same
``saadi_register_executors`` hook a third party uses — a Ray or Dask executor is a plugin):

* ``local`` — one job after another in this process (the default);
* ``processes`` — ``workers`` local worker processes (``concurrent.futures`` with ``spawn``);
* ``slurm`` — a job array through ``submitit`` (``pip install saadi[cluster]``); its ``cluster``
  option ``local``/``debug`` runs the same code path on this machine (submitit's own executors).

An executor is built as ``cls(options, context)`` like any component and implements
:class:`Executor`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from saadi_core.errors import ConfigError

J = TypeVar("J")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` over ``jobs`` and returns ``[fn(job) for job in jobs]`` in job order.

    ``in_process`` says whether ``fn`` runs in this process (it may then close over objects that
    do not pickle, such as the CLI's plugin registry); otherwise ``fn`` and every job must pickle
    (a module-level function and plain data) and each worker builds its own registry.
    """

    in_process: bool

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]: ...


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcessesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default=2, ge=1, description="worker processes")
    threads_per_worker: int | None = Field(
        default=None,
        ge=1,
        description="torch threads in each worker; None = OMP_NUM_THREADS if set, else the cores shared out "
        "(cores // workers, at least 1), so the workers do not oversubscribe the machine",
    )


class SlurmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: Literal["slurm", "local", "debug"] | None = Field(
        default=None,
        description="submitit cluster: None = Slurm when available, else local; 'local' = subprocesses on this machine, "
        "'debug' = in this process (both for trying a set-up without a cluster)",
    )
    folder: Path | None = Field(
        default=None, description="submitit log/pickle folder; None = <study>/submitit"
    )
    partition: str | None = Field(default=None, description="Slurm partition")
    timeout_min: int = Field(default=24 * 60, ge=1, description="time limit per job in minutes")
    cpus_per_task: int = Field(default=2, ge=1)
    gpus_per_node: int = Field(default=0, ge=0)
    mem_gb: int | None = Field(default=None, ge=1)
    array_parallelism: int = Field(
        default=64, ge=1, description="jobs of the array running at once"
    )
    additional: dict[str, Any] = Field(
        default_factory=dict, description="further submitit parameters (slurm_* keys)"
    )


class LocalExecutor:
    """One job after another in this process."""

    in_process = True

    def __init__(self, options: LocalOptions | None = None, context: Any = None) -> None:
        self.options = options or LocalOptions()

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        return [fn(job) for job in jobs]


#: how often a local worker checks that the study process is still there (seconds), and how long
#: it gives its interrupted job to release its locks before the kernel ends it (SIGALRM)
PARENT_CHECK_SECONDS = 1.0
ORPHAN_GRACE_SECONDS = 30


def _start_worker(threads: int | None) -> None:
    """Set up one local worker: its torch threads, and a watch on the study process. Why the
    watch: a study stopped by SIGTERM (``kill``, a scheduler's time limit) dies without telling
    its pool, and the workers would go on computing stages nobody reads, holding cores and stage
    locks. When the parent is gone, the worker interrupts its job as Ctrl-C would (finished
    stages are kept, locks released) and exits."""
    import signal
    import threading

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    # a study started from a script or in the background may inherit SIGINT ignored; the watch
    # below interrupts the job with it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(
        target=_exit_when_orphaned, args=(os.getppid(),), daemon=True, name="saadi-parent-watch"
    ).start()


def _exit_when_orphaned(parent: int) -> None:
    import signal
    import time

    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    # the pool's queues never see the parent go (the worker holds both ends of its pipes), so
    # the worker would wait for work for ever: SIGALRM's default action ends it whatever state
    # the interpreter is in
    signal.alarm(ORPHAN_GRACE_SECONDS)
    os.kill(os.getpid(), signal.SIGINT)


def worker_threads(threads: int | None, workers: int) -> int | None:
    """Torch threads per local worker: the option, else ``OMP_NUM_THREADS`` (None: torch reads it),
    else the cores shared out. Why: every torch process takes all cores by default, so two workers
    on two cores would each run two threads and slow each other down."""
    if threads is not None:
        return threads
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 1) // workers)


class ProcessesExecutor:
    """``workers`` local processes; jobs are handed out in order as workers become free.

    ``spawn`` rather than ``fork``: a forked copy of a process that already ran torch can
    deadlock in its thread pools. A worker that dies (killed, out of memory) fails the study with
    the pool's error; the stages it finished are kept, and re-running resumes. A study process
    that dies (SIGTERM) takes its workers with it within about a second: each worker watches its
    parent.
    """

    in_process = False

    def __init__(self, options: ProcessesOptions, context: Any = None) -> None:
        self.options = options

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if not jobs:
            return []
        workers = min(self.options.workers, len(jobs))
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(worker_threads(self.options.threads_per_worker, workers),),
        ) as pool:
            return list(pool.map(fn, jobs))


class SlurmExecutor:
    """A ``submitit`` job array: one Slurm job per study job, results collected in job order.

    The study's runs directory must be on a file system the nodes share (the stage store and its
    locks live there).
    """

    in_process = False

    def __init__(self, options: SlurmOptions, context: Any = None) -> None:
        self.options = options
        self.folder: Path | None = options.folder

    def map(self, fn: Callable[[J], R], jobs: Sequence[J]) -> list[R]:
        try:
            import submitit
        except ImportError:
            raise ConfigError(
                "executor 'slurm' needs submitit: pip install 'saadi[cluster]'"
            ) from None
        if not jobs:
            return []
        opts = self.options
        folder = Path(opts.folder or self.folder or Path.cwd() / "submitit")
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=opts.cluster)
        parameters: dict[str, Any] = {
            "timeout_min": opts.timeout_min,
            "cpus_per_task": opts.cpus_per_task,
            "gpus_per_node": opts.gpus_per_node,
            "slurm_array_parallelism": opts.array_parallelism,
        }
        if opts.partition:
            parameters["slurm_partition"] = opts.partition
        if opts.mem_gb:
            parameters["mem_gb"] = opts.mem_gb
        parameters.update(opts.additional)
        if executor.cluster != "slurm":  # the local/debug executors take the generic names only
            parameters = {k: v for k, v in parameters.items() if not k.startswith("slurm_")}
        executor.update_parameters(**parameters)
        submitted = executor.map_array(fn, list(jobs))
        return [job.result() for job in submitted]


def create_executor(
    registry: Any,
    kind: str,
    options: dict[str, Any] | None = None,
    default_folder: Path | None = None,
) -> Executor:
    """The executor ``kind`` with ``options`` (checked against its options model)."""
    executor = registry.create("executor", kind, options or {})
    if default_folder is not None and getattr(executor, "folder", "absent") is None:
        executor.folder = default_folder
    if not isinstance(executor, Executor):
        raise ConfigError(f"executor '{kind}' does not implement map(fn, jobs) and in_process")
    return executor
