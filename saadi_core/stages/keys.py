"""The code part of every stage's cache key: which code computed a result.

A stage's key (:meth:`saadi_core.store.RunStore.stage`) hashes its name, its parameters and its
inputs' keys. Parameters alone go stale when the *code* changes: an upgraded generator plugin
would silently reuse results the old version computed. So every stage also hashes
:func:`code_versions`: :data:`CODE_FORMAT`, saadi's version, and the version of every plugin
distribution whose code computes that stage — the plugin providing each component kind it
builds, and every plugin implementing a lifecycle hook it calls. Upgrading one plugin recomputes
the stages its code computes and, through their keys, what depends on them; nothing else.

Versions alone miss the commonest change of all: a researcher editing a plugin installed with
``pip install -e`` keeps its version, and its old results would be reused. So the key also holds
a digest of each such plugin's files (:func:`source_digest`: the top-level package its code is
imported from, weights included). The core's own code is keyed by its version and
:data:`CODE_FORMAT`, which its developers bump.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path
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
    """``{"format", "saadi", "plugins": {plugin: version}, "sources": {plugin: digest}}`` for the
    plugins providing ``kinds`` (``(category, kind)`` pairs) and implementing ``hooks``;
    ``sources`` holds the plugins whose files were found (:func:`source_digest`)."""
    plugins: dict[str, str] = {}
    digests: dict[str, set[str]] = {}

    def add(name: str, version: str, module: str | None) -> None:
        plugins[name] = version
        digest = source_digest(module) if module else None
        if digest is not None:
            digests.setdefault(name, set()).add(digest)

    for category, kind in kinds:
        entry = registry.get(category, kind)
        target = entry.target
        add(
            entry.plugin,
            entry.version,
            target.partition(":")[0]
            if isinstance(target, str)
            else getattr(target, "__module__", None),
        )
    for hook in hooks:
        for info in hook_plugins(registry, hook):
            add(info.name, info.version, info.module.partition(":")[0])
    return {
        "format": CODE_FORMAT,
        "saadi": __version__,
        "plugins": dict(sorted(plugins.items())),
        "sources": {name: _combined(digests[name]) for name in sorted(digests)},
    }


def _combined(digests: set[str]) -> str:
    """One digest for a plugin whose code spans several top-level packages (each one's edits
    must count); a one-package plugin keeps its package's digest."""
    if len(digests) == 1:
        return next(iter(digests))
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


@functools.cache
def source_digest(module: str) -> str | None:
    """A digest of every file of the top-level package (or single module) ``module`` is imported
    from: relative paths and contents, ``__pycache__`` left out. ``None`` for the core (keyed by
    its version), for a name that is not an importable module (an object registered in
    process) and for code not in files (a zip). Computed once per process."""
    top = module.split(".")[0]
    if not top or top == "saadi_core":
        return None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        roots = [Path(p) for p in spec.submodule_search_locations]
        files = [
            (root, path)
            for root in roots
            for path in root.rglob("*")
            if path.is_file() and "__pycache__" not in path.relative_to(root).parts
        ]
    elif spec.origin and Path(spec.origin).is_file():
        origin = Path(spec.origin)
        files = [(origin.parent, origin)]
    else:
        return None
    digest = hashlib.sha256()
    for root, path in sorted(files, key=lambda item: item[1].relative_to(item[0]).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]
