"""Registration of the example kinds with saadi, and its lifecycle hooks (a metric).

This module is what the ``saadi`` entry point names. It only tells saadi *where* things are
(import-path strings): importing it must not import torch or the implementation modules, so
``saadi --help`` and ``saadi plugins`` stay fast for everyone who installs this plugin.
"""

from __future__ import annotations

from saadi_core import hookimpl


@hookimpl
def saadi_register_selectors(register):
    register(
        "example-tinycnn",
        "saadi_plugin_example.selector:TinyCNN",
        options="saadi_plugin_example.options:TinyCNNOptions",
        description="3-layer CNN classifier (example third-party selector).",
        profiles={"paper": {"channels": 32, "epochs": 30}},
    )


@hookimpl
def saadi_register_pairings(register):
    register(
        "example-top1",
        "saadi_plugin_example.pairing:Top1",
        options="saadi_plugin_example.options:Top1Options",
        description="Per condition, the best sample vs the worst one (example third-party pairing).",
    )


# --------------------------------------------------------------------------- a metric
# Lifecycle hooks: the example contrast metric is computed in the evaluate stage, put into
# summary.json, printed at the end of `saadi run` and shown in `saadi report` — with no change to
# saadi itself. The work is imported only when a hook is called.


@hookimpl
def saadi_evaluate_samples(evaluation):
    from saadi_plugin_example.contrast import KEY, evaluate

    return {KEY: evaluate(evaluation.samples, evaluation.seed)}


@hookimpl
def saadi_summary_entries(run):
    from saadi_plugin_example.contrast import KEY

    return {KEY: run.outputs("evaluate").get(KEY)}


@hookimpl
def saadi_terminal_summary(summary, write):
    from saadi_plugin_example.contrast import KEY, line

    if summary.get(KEY):
        write(line(summary[KEY]))


@hookimpl
def saadi_report_sections(run):
    from saadi_plugin_example.contrast import KEY, section

    entry = run.summary.get(KEY) if isinstance(run.summary, dict) else None
    return (
        [("example-contrast", "Image contrast (example plugin)", section(entry))] if entry else None
    )
