"""Hook specifications — the only contract a plugin module implements.

A plugin is a module (named by an entry point in the ``saadi`` group) with functions decorated
``@saadi_core.hookimpl``. Each hook receives a ``register`` callable bound to one category::

    from saadi_core import hookimpl

    @hookimpl
    def saadi_register_selectors(register):
        register(
            "tinycnn",                         # the kind users write in config
            "my_pkg.selector:TinyCNN",         # import path, loaded only when used
            options="my_pkg.options:TinyCNNOptions",  # or the pydantic class itself
            description="A 3-layer CNN selector.",
            profiles={"paper": {"epochs": 50}},
            task="classification",             # optional: the dataset task it needs
        )

Registration is *lazy by contract*: the plugin module must not import torch, diffusers or its
implementation module at import time, so discovering plugins (``saadi --help``,
``saadi plugins``) stays fast. The implementation is imported when a run builds the component.

What the target must be, per category:

* generators, selectors, pairings, aligners — a :class:`saadi_core.interfaces.Component`
  subclass built as ``cls(options, context)``;
* datasets — a callable ``build(options) -> saadi_core.data.Dataset``;
* executors — a class built as ``cls(options, context)`` implementing
  :class:`saadi_core.executors.Executor` (where a study's runs execute);
* metrics — a callable ``metric(options) -> object`` with ``name`` and ``compute(inputs)``
  (:class:`saadi_core.evaluation.fidelity.FidelityInputs` in, a JSON-able dict out).
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "saadi"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def saadi_register_generators(register: Any) -> None:
    """Register generator kinds (Stage 1: SSD, SSI, SimGen, CASDM, SimuScope, …)."""


@hookspec
def saadi_register_selectors(register: Any) -> None:
    """Register selector / downstream task-model kinds (classifiers, segmenters)."""


@hookspec
def saadi_register_pairings(register: Any) -> None:
    """Register pairing strategies (threshold, best-worst, …)."""


@hookspec
def saadi_register_aligners(register: Any) -> None:
    """Register aligners (diffusion-dpo, iterative, …)."""


@hookspec
def saadi_register_datasets(register: Any) -> None:
    """Register dataset builders (embedded toy sets, folder layouts, …)."""


@hookspec
def saadi_register_metrics(register: Any) -> None:
    """Register evaluation metrics (FID/KID, MS-SSIM, …)."""


@hookspec
def saadi_register_executors(register: Any) -> None:
    """Register study executors (local, processes, slurm, …)."""


#: hook name -> category name used in config and error messages
CATEGORIES: dict[str, str] = {
    "saadi_register_generators": "generator",
    "saadi_register_selectors": "selector",
    "saadi_register_pairings": "pairing",
    "saadi_register_aligners": "aligner",
    "saadi_register_datasets": "dataset",
    "saadi_register_metrics": "metric",
    "saadi_register_executors": "executor",
}
