"""One run on several processes (``torchrun`` / ``accelerate launch``): ranks, the shared
accelerator, a rank-aware stage store and sharded sampling.

The launcher starts the same ``saadi run`` in every process and sets ``RANK`` / ``WORLD_SIZE``.
Then:

* **one accelerator per run** — :func:`run_accelerator` creates it (initialising the process
  group: gloo on CPUs, NCCL on GPUs) and the run hands it to every component through
  ``RunContext.accelerator``, so generator, selector, DPO and downstream training are
  data-parallel (gradients averaged across processes);
* **only rank 0 writes the run** — every process executes every stage (training steps are
  collective), but only rank 0 renames its result into the stage store and writes the manifest,
  events and summary; the other ranks compute into a private scratch directory, wait at a barrier
  and then read rank 0's result (:class:`RankedRunStore`). Their own run directory is a temporary
  one, so nothing they write reaches the user's;
* **sampling sharded, gathered in seed order** — :func:`sample` gives each rank every
  ``world``-th condition, gathers the samples and puts them back in the order one process
  returns them. A generator's sample ``i`` of condition ``c`` depends only on ``(seed, c, i)``
  (the :class:`~saadi_core.interfaces.Generator` contract), so the gathered samples equal a
  one-process run's for the same weights.

With one process (no launcher) every function here is the plain single-process behaviour.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from saadi_core.errors import PipelineError
from saadi_core.store import RunStore, StageResult, content_key


def world_size() -> int:
    """Processes of this run (``WORLD_SIZE`` set by torchrun / accelerate launch; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def run_accelerator(device: str) -> Any | None:
    """The run's ``accelerate.Accelerator`` when launched on several processes (``None`` for
    one: each component then makes its own single-process one, with its own precision)."""
    if world_size() == 1:
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=str(device) == "cpu")


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def _broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class RankedRunStore(RunStore):
    """A run store shared by the processes of one run; see the module docstring."""

    def stage(
        self,
        name: str,
        params: dict[str, Any],
        fn: Callable[[Path], dict[str, Any] | None],
        deps: Sequence[StageResult] = (),
        force: bool = False,
    ) -> StageResult:
        key = content_key(name, params, [(d.name, d.key) for d in deps])
        _barrier()
        cached = _broadcast(not force and self.find(name, key) is not None)  # rank 0's view decides
        if is_main_process():  # under the stage lock, like any run sharing the stage store
            result: StageResult | None = super().stage(name, params, fn, deps, force=force)
        elif not cached:
            scratch = Path(tempfile.mkdtemp(prefix=f".rank{rank()}-{name}-", dir=self.root))
            try:
                fn(scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        _barrier()
        if not is_main_process():
            result = self.find(name, key)
            if result is None:
                raise PipelineError(
                    f"rank {rank()}: stage '{name}' was not written by rank 0 ({self.stage_path(name, key)})"
                )
        assert result is not None
        return result


def create_store(
    runs_dir: Path,
    name: str,
    config: dict[str, Any],
    versions: dict[str, Any],
    stages_dir: Path | None,
) -> RunStore:
    """The run's store: the ordinary one for one process; with several, rank 0 owns
    ``runs_dir/name`` and the other ranks get a temporary run directory over the same stages."""
    if world_size() == 1:
        return RunStore.create(runs_dir, name, config, versions=versions, stages_dir=stages_dir)
    shared = Path(stages_dir) if stages_dir is not None else Path(runs_dir) / name / "stages"
    if is_main_process():
        return RankedRunStore.create(runs_dir, name, config, versions=versions, stages_dir=shared)
    scratch = Path(tempfile.mkdtemp(prefix=f"saadi-rank{rank()}-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return RankedRunStore.create(scratch, name, config, versions=versions, stages_dir=shared)


def sample(generator: Any, conditions: Sequence[Any], n_per_condition: int, seed: int) -> list[Any]:
    """``generator.sample(conditions, n_per_condition, seed)``, sharded over the processes by
    condition and gathered back in one-process order (condition by condition, index by index)."""
    ids = [c.id for c in conditions]
    if world_size() == 1 or len(set(ids)) != len(
        ids
    ):  # repeated ids could not be put back in order
        return generator.sample(conditions, n_per_condition, seed)
    import torch.distributed as dist

    mine = list(conditions)[rank() :: world_size()]
    local = generator.sample(mine, n_per_condition, seed) if mine else []
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, local)
    by_condition: dict[str, list[Any]] = {}
    for part in parts:
        for s in part:
            by_condition.setdefault(s.condition.id, []).append(s)
    return [s for c in conditions for s in by_condition.get(c.id, [])]
