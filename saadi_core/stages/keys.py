"""The code part of every stage's cache key: which code computed a result.

A stage's key (:meth:`saadi_core.store.RunStore.stage`) hashes its name, its parameters and its
inputs' keys. Parameters alone go stale when the *code* changes: an upgraded generator plugin
would silently reuse results the old version computed. So every stage also hashes
:func:`code_versions`: :data:`CODE_FORMAT`, saadi's version, and the version of every plugin
distribution whose code computes that stage — the plugin providing each component kind it
builds, and every plugin implementing a lifecycle hook it calls. Upgrading one plugin recomputes
the stages its code computes and, through their keys, what depends on them; nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from saadi_core import __version__
from saadi_core.lifecycle import hook_plugins

#: bump when the core changes what a stage writes or how (a file layout, a computation) without
#: a version change, so results of the old code are not reused
CODE_FORMAT = 1

#: config slot -> registry category (the downstream model is a selector kind)
CATEGORY = {
    "generator": "generator",
    "selector": "selector",
    "pairing": "pairing",
    "aligner": "aligner",
    "downstream": "selector",
    "dataset": "dataset",
}


def code_versions(
    registry: Any, kinds: Iterable[tuple[str, str]] = (), hooks: Iterable[str] = ()
) -> dict[str, Any]:
    """``{"format", "saadi", "plugins": {plugin: version}}`` for the plugins providing ``kinds``
    (``(category, kind)`` pairs) and implementing ``hooks``."""
    plugins: dict[str, str] = {}
    for category, kind in kinds:
        entry = registry.get(category, kind)
        plugins[entry.plugin] = entry.version
    for hook in hooks:
        for info in hook_plugins(registry, hook):
            plugins[info.name] = info.version
    return {"format": CODE_FORMAT, "saadi": __version__, "plugins": dict(sorted(plugins.items()))}
