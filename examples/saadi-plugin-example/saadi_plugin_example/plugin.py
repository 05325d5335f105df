"""Registration of the example kinds with saadi.

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
