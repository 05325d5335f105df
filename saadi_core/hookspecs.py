"""Hook specifications — the only contract a plugin module implements.

A plugin is a module (named by an entry point in the ``saadi`` group) with functions decorated
``@saadi_core.hookimpl``. Two kinds of hooks: the ``saadi_register_*`` hooks add component kinds,
and the lifecycle hooks (further down) take part in a run's evaluation, summary and report.
Each register hook receives a ``register`` callable bound to one category::

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
    """Register study executors (local, processes, slurm, …): where a study's runs execute.

    Called once when the registry discovers plugins, like the other ``saadi_register_*`` hooks;
    ``saadi study --executor NAME`` builds the registered class with its ``--executor-option``
    values as options.

    :param register: ``register(name, target, options=..., description=...)`` bound to the
        ``executor`` category.
    """


# --------------------------------------------------------------------------- lifecycle hooks
#
# Beside registering kinds, a plugin can take part in what a run *does* with its results, the
# way pytest's own features are plugins of pytest's hooks. The first-party evaluation (pass rates
# with McNemar, label preservation, class presence, fidelity) is implemented by the built-in
# plugins of :mod:`saadi_core.builtins` through exactly these hooks, so a third-party metric
# reaches ``summary.json``, the end-of-run output and the HTML report the same way.
#
# Every implementation of a lifecycle hook is called, and the results are merged in plugin
# registration order (built-ins first), except ``saadi_study_arm_label``, where the first answer
# wins. The code version of every plugin implementing
# ``saadi_evaluate_samples`` is part of the ``evaluate`` stage's cache key, so upgrading a metric
# plugin recomputes the evaluation and nothing else.


@hookspec
def saadi_evaluate_samples(evaluation: Any) -> dict[str, Any] | None:
    """Evaluate the held-out samples of a run (the ``evaluate`` stage).

    Called once per run inside the ``evaluate`` stage, after every variant's held-out samples
    (``"base"``, and ``"aligned"`` when the run aligns) were loaded, scored by the run's selector
    and, on toy data, judged by the dataset's oracle. Not called when the stage is found in the
    cache — what it returned then is read back from the cache.

    :param evaluation: a :class:`saadi_core.lifecycle.Evaluation`: ``dataset``, ``selector``,
        ``samples`` / ``scores`` / ``selector_pass`` / ``oracle_pass`` by variant, ``threshold``
        (h), ``seed`` (the run's evaluation seed, for any resampling) and ``warn(message)``.
        Base and aligned samples share seeds and conditions, in the same order: a paired test
        is the right one.

    :return: JSON-able entries merged into the stage's outputs (``stage.json``), or ``None``.
        Keys must be unique across plugins (a clash is a :class:`PluginError`), except
        ``"warnings"``, a list of one-line warnings that is concatenated. The entries reach
        ``summary.json`` only through :func:`saadi_summary_entries`.
    """


@hookspec
def saadi_summary_entries(run: Any) -> dict[str, Any] | None:
    """Contribute top-level entries to ``summary.json``.

    Called once at the end of ``saadi run``, after every stage finished (computed or cached) and
    the core entries (run, task, components, selector test, alignment, downstream, timings) were
    assembled; also by ``saadi study`` for every generator arm's run, which reads the same file.

    :param run: a :class:`saadi_core.lifecycle.RunOutputs`: ``outputs(stage_name)`` (a stage's
        reported outputs, ``{}`` when the stage did not run), ``root`` (the run directory, for
        artefacts such as ``fidelity.json``), ``task`` and ``summary`` (the entries so far,
        read-only).

    :return: entries merged into ``summary.json``, or ``None``. Keys must be unique across
        plugins and must not replace a core entry; ``"warnings"`` lists are concatenated.
    """


@hookspec
def saadi_terminal_summary(summary: dict[str, Any], write: Any) -> None:
    """Add lines to the end-of-run output of ``saadi run``.

    Called once after the pass-rate table (McNemar on the same seeds) was printed, before the
    downstream table, the warnings and the stage times — like pytest's
    ``pytest_terminal_summary``. Not called by ``saadi study``.

    :param summary: the run's ``summary.json`` content.
    :param write: ``write(line)`` prints one line (rich markup allowed).
    """


@hookspec
def saadi_report_sections(run: Any) -> list[tuple[str, str, str]] | None:
    """Contribute sections to a run's HTML report (``saadi report``).

    Called once per run page (also for every run of a study page), after the built-in sections
    were built; the returned sections are placed before the "Config and versions" section.

    :param run: a :class:`saadi_core.report.data.RunData`: the run's manifest, ``summary``,
        ``stage_json(stage, file)`` and ``artefact(file)`` readers.

    :return: ``[(anchor, title, html_body), ...]`` or ``None``. The body is inserted as is:
        escape what you did not write (``saadi_core.report.markup`` has ``text`` and ``table``).
        An exception costs the plugin its sections, not the report.
    """


@hookspec(firstresult=True)
def saadi_study_arm_label(arm: Any) -> str | None:
    """Name the synthetic set a study arm contributes (a study arm kind).

    Called by ``saadi study`` for every arm, to decide which of the arm's runs' sample sets its
    downstream models train on and how its rows are named (``real+<label>@<scale>x``). The
    built-in arm kinds answer ``"aligned"`` (an arm with an aligner), ``"base"`` (a generator
    alone), ``"filter"`` / ``"aligned-filter"`` (``filter: true``: the run's samples filtered
    by the selector, :mod:`saadi_core.filter_arm`) and the arm's name (a mix of other arms).

    :param arm: a :class:`saadi_core.config.ArmConfig`.

    :return: the label, or ``None`` when the arm is not of a kind this plugin knows. For a
        generator arm it must name a sample set its run produces (``"base"``, or ``"aligned"``
        when the arm has an aligner); a new kind of sample set is not an arm kind yet. The first
        answer wins (``firstresult``); plugins registered later are asked first, so a
        third-party arm kind is asked before the built-ins and answers for the arms it knows.
    """


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

#: the lifecycle hooks, in the order a run calls them
LIFECYCLE_HOOKS: tuple[str, ...] = (
    "saadi_evaluate_samples",
    "saadi_summary_entries",
    "saadi_terminal_summary",
    "saadi_report_sections",
    "saadi_study_arm_label",
)
