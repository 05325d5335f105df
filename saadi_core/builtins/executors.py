"""Built-in plugin of the core: registers the study executors (see :mod:`saadi_core.executors`).

Registered in every registry like the other built-ins, so ``local``, ``processes`` and ``slurm`` go through the
``saadi_register_executors`` hook a third party uses for its own (Ray, Dask, …). Import paths
only: nothing here imports the implementations.
"""

from __future__ import annotations

from typing import Any

from saadi_core import hookimpl

_MODULE = "saadi_core.executors"


@hookimpl
def saadi_register_executors(register: Any) -> None:
    register(
        "local",
        f"{_MODULE}:LocalExecutor",
        options=f"{_MODULE}:LocalOptions",
        description="One run after another in this process (the default).",
    )
    register(
        "processes",
        f"{_MODULE}:ProcessesExecutor",
        options=f"{_MODULE}:ProcessesOptions",
        description="N local worker processes sharing the study's stage store (option workers).",
    )
    register(
        "slurm",
        f"{_MODULE}:SlurmExecutor",
        options=f"{_MODULE}:SlurmOptions",
        description="A Slurm job array through submitit (saadi[cluster]); cluster=local/debug runs it on this machine.",
    )
