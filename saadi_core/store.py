"""The run directory: manifest plus content-keyed, atomic, resumable stages.

Layout of ``runs/<name>/``::

    manifest.json                 config, versions, plugins, seeds, stage status and timings
    events.jsonl                  one JSON object per event (machines read this, not the console)
    stages/<stage>-<key12>/       one directory per stage result
        stage.json                the stage's metadata: key, params, deps, outputs summary
        ...                       whatever the stage wrote

A stage's key is the SHA-256 of its name, its parameters (options, seeds, code version) and the
keys of the stages it depends on. So changing one option changes the key of that stage and of
everything downstream — and only those are recomputed; upstream results are found by key and
reused. A stage is computed into ``stages/.tmp-…`` and renamed into place only when it finished,
so a killed run never leaves a half-written result that looks complete, and re-running resumes at
the first stage without a result. The manifest is rewritten atomically (temp file + rename).

Integrity and concurrency (``docs/failure-modes.md``): ``stage.json`` lists the size and SHA-256
of every file the stage wrote, and a cached stage is used only if they still match — a damaged
one is recomputed with a warning naming the file. A run directory is locked by one process at a
time, and each stage is computed under its own lock (:mod:`saadi_core.locks`), so workers sharing
a stage store compute a stage once and the others wait for it and reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from saadi_core.errors import DataError, SaadiError
from saadi_core.integrity import checksum_tree, verify_tree
from saadi_core.locks import lock_run, release_run, stage_lock, try_stage_lock

MANIFEST = "manifest.json"
STAGE_META = "stage.json"
#: run-level results of the last finished run; moved to ``previous/`` when the config changes
RESULT_FILES = ("summary.json", "downstream.json", "fidelity.json")
PREVIOUS_DIR = "previous"
#: ``.tmp-<stage>-<key12>-<random>``: a stage being computed (or left by a killed process)
_TMP_RE = re.compile(r"^\.tmp-(?P<name>.+)-(?P<key>[0-9a-f]{12})-[a-z0-9_]+$")


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _jsonable(value: Any) -> Any:
    """JSON form used for hashing and the manifest (paths as strings, sets sorted)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump(mode="json"))
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def content_key(*parts: Any) -> str:
    """Stable SHA-256 of JSON-serialisable parts (key order does not matter)."""
    blob = json.dumps(_jsonable(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


class StageNotFinished(DataError):
    """A run has no finished result of the stage asked for; the message says why (absent, not
    done, or its directory gone) without naming the run, which the caller knows."""


def finished_stage_dir(run: Path, manifest: dict[str, Any], stage: str) -> Path:
    """The directory of ``run``'s latest finished ``stage``, as its manifest records it.

    What reads a run after the fact (the report, pool exports, a study's evidence table) needs one
    answer to "where is that result, and is it whole?" — a stage that is still running or failed
    has a manifest entry but no result to read. Raises :class:`StageNotFinished`."""
    entry = (manifest.get("stages") or {}).get(stage)
    if not entry:
        raise StageNotFinished(f"the run has no '{stage}' stage")
    if entry.get("status") != "done" or not entry.get("path"):
        error = f" ({entry['error']})" if entry.get("error") else ""
        raise StageNotFinished(f"stage '{stage}' is {entry.get('status', 'unfinished')}{error}")
    path = Path(run) / entry["path"]
    if not path.is_dir():
        raise StageNotFinished(f"stage '{stage}' directory {entry['path']} is gone")
    return path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class StageResult:
    """A finished stage: where its files are and what it reported."""

    name: str
    key: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    @property
    def outputs(self) -> dict[str, Any]:
        return self.meta.get("outputs", {})


class RunStore:
    """One run directory. Create with :meth:`create` (new or resumed run) or :meth:`open`."""

    def __init__(self, root: Path, stages_dir: Path | None = None) -> None:
        self.root = Path(root)
        #: where warnings go (damaged cached files, waiting for another process); stderr by default
        self.warn: Callable[[str], None] = _stderr_warning
        self._manifest: dict[str, Any] = {}
        if (self.root / MANIFEST).is_file():
            self._manifest = self._read_manifest()
        if stages_dir is None and self._manifest.get("stages_dir"):
            stages_dir = self.root / self._manifest["stages_dir"]
        self.stages_dir = Path(stages_dir) if stages_dir is not None else self.root / "stages"

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        runs_dir: Path,
        name: str,
        config: dict[str, Any],
        versions: dict[str, Any] | None = None,
        stages_dir: Path | None = None,
    ) -> RunStore:
        """Open ``runs_dir/name``, creating it if needed. An existing run keeps its stage
        history (so it can resume); its config is replaced by ``config``.

        ``stages_dir`` shares stage results between runs (a study's arms): a stage with the same
        key — the same generator on the same data, the same real-only downstream model — is
        computed by the first run that needs it and found by the others."""
        if not name or "/" in name or name.startswith("."):
            raise SaadiError(f"invalid run name '{name}': use letters, digits, '-', '_' and '.'")
        root = Path(runs_dir) / name
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SaadiError(
                f"cannot create the run directory {root}: {exc.strerror or exc}"
            ) from None
        lock_run(root)
        try:
            store = cls(root, stages_dir=stages_dir)
        except SaadiError as exc:  # a damaged manifest: stages are found by key, so start a new one
            _stderr_warning(
                f"{exc}; it is kept as {MANIFEST}.damaged and a new manifest is written"
            )
            os.replace(root / MANIFEST, root / f"{MANIFEST}.damaged")
            store = cls(root, stages_dir=stages_dir)
        store.stages_dir.mkdir(parents=True, exist_ok=True)
        store.clean_temp()
        manifest = store._manifest or {"name": name, "created": _now(), "stages": {}}
        if store._manifest.get("config") not in (None, _jsonable(config)):
            store._set_aside_results()
        if stages_dir is not None:
            manifest["stages_dir"] = os.path.relpath(store.stages_dir, store.root)
        manifest["config"] = _jsonable(config)
        manifest["versions"] = _jsonable(versions or {})
        manifest["updated"] = _now()
        store._manifest = manifest
        store.write_manifest()
        return store

    def release(self) -> None:
        """Give back the run lock taken by :meth:`create` (the run is finished; the OS gives it
        back anyway when the process ends)."""
        release_run(self.root)

    @classmethod
    def open(cls, path: Path) -> RunStore:
        """An existing run directory (for reports); a clear error if it is not one."""
        root = Path(path)
        if not (root / MANIFEST).is_file():
            raise SaadiError(f"not a saadi run directory (no {MANIFEST}): {root}")
        return cls(root)

    def _read_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SaadiError(f"cannot read run manifest {path}: {exc}") from None
        if not isinstance(manifest, dict):
            raise SaadiError(f"cannot read run manifest {path}: not a JSON object")
        return manifest

    def _set_aside_results(self) -> None:
        """A run re-started with another config: move the old run's results to ``previous/`` so
        that, if this run fails, nothing shows old results beside the new config."""
        present = [self.root / f for f in RESULT_FILES if (self.root / f).is_file()]
        if not present:
            return
        (self.root / PREVIOUS_DIR).mkdir(exist_ok=True)
        for path in present:
            os.replace(path, self.root / PREVIOUS_DIR / path.name)
        self._manifest["previous_results"] = {
            "dir": PREVIOUS_DIR,
            "config": self._manifest.get("config"),
        }

    # ------------------------------------------------------------------ manifest

    @property
    def manifest(self) -> dict[str, Any]:
        return self._manifest

    def write_manifest(self) -> None:
        self._manifest["updated"] = _now()
        atomic_write_json(self.root / MANIFEST, self._manifest)

    def update_manifest(self, **fields: Any) -> None:
        """Set top-level manifest fields (e.g. ``seeds=…``, ``summary=…``) and save."""
        self._manifest.update(_jsonable(fields))
        self.write_manifest()

    def log_event(self, event: str, **fields: Any) -> None:
        """Append one JSON line to ``events.jsonl`` (append of one short line is atomic enough
        for a single writer; the manifest stays the source of truth)."""
        line = json.dumps(_jsonable({"time": _now(), "event": event, **fields}), sort_keys=True)
        with open(self.root / "events.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def _set_stage_status(self, name: str, **status: Any) -> None:
        self._manifest.setdefault("stages", {}).setdefault(name, {}).update(_jsonable(status))
        self.write_manifest()

    # ------------------------------------------------------------------ stages

    def _relative(self, path: Path) -> str:
        """A stage path as the manifest stores it: relative to the run root (``..`` when the
        stages are shared), so a copied or moved study directory still resolves."""
        return os.path.relpath(path, self.root)

    def stage_path(self, name: str, key: str) -> Path:
        return self.stages_dir / f"{name}-{key[:12]}"

    def find(self, name: str, key: str) -> StageResult | None:
        """The finished, intact result of ``name`` with ``key``, if any."""
        return self._load(name, key)[0]

    def _load(self, name: str, key: str) -> tuple[StageResult | None, str | None]:
        """``(result, None)``, ``(None, None)`` when absent, ``(None, problem)`` when damaged."""
        path = self.stage_path(name, key)
        meta_file = path / STAGE_META
        if not path.is_dir():
            return None, None
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError) as exc:  # truncated or overwritten stage.json
            return None, f"{meta_file} cannot be read ({type(exc).__name__})"
        if not isinstance(meta, dict) or meta.get("key") != key:  # a 12-char prefix collision
            return None, None
        problem = verify_tree(path, meta.get("checksums") or {})
        if problem is not None:
            return None, problem
        return StageResult(name=name, key=key, path=path, meta=meta, cached=True), None

    def stage(
        self,
        name: str,
        params: dict[str, Any],
        fn: Callable[[Path], dict[str, Any] | None],
        deps: Sequence[StageResult] = (),
        force: bool = False,
    ) -> StageResult:
        """Return the cached result of this stage or compute it (``force``: compute it anyway and
        replace the cached result).

        ``fn(tmp_dir)`` writes its files into ``tmp_dir`` and returns a JSON-serialisable summary
        (stored as ``outputs``). Only when it returns is the directory renamed into place; if it
        raises, the temporary directory is removed and the stage is marked failed. The check for
        a cached result is repeated under the stage lock, so of several processes sharing the
        stage store one computes and the others reuse its result.
        """
        key = content_key(name, params, [(d.name, d.key) for d in deps])
        found = None if force else self.find(name, key)
        if found is None:
            self.stages_dir.mkdir(parents=True, exist_ok=True)
            with stage_lock(self.stages_dir, name, key, on_wait=self.warn):
                found, problem = (None, None) if force else self._load(name, key)
                if found is None:
                    if problem is not None:
                        self.warn(f"cached stage {name} is damaged: {problem}; recomputing it")
                        self.log_event("stage_damaged", stage=name, key=key, problem=problem)
                    return self._compute(name, key, params, fn, deps)
        self._set_stage_status(
            name, key=key, status="done", cached=True, path=self._relative(found.path)
        )
        self.log_event("stage_cached", stage=name, key=key)
        return found

    def _compute(
        self,
        name: str,
        key: str,
        params: dict[str, Any],
        fn: Callable[[Path], dict[str, Any] | None],
        deps: Sequence[StageResult],
    ) -> StageResult:
        """Compute one stage into a temporary directory and rename it into place (stage lock held)."""
        for leftover in self.stages_dir.glob(f".tmp-{name}-{key[:12]}-*"):  # of a killed process
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-{key[:12]}-", dir=self.stages_dir))
        started = time.perf_counter()
        self._set_stage_status(name, key=key, status="running", cached=False, started=_now())
        self.log_event("stage_started", stage=name, key=key)
        try:
            outputs = fn(tmp) or {}
            seconds = time.perf_counter() - started
            import torch  # here, not at import: the CLI starts without it

            meta = {
                "name": name,
                "key": key,
                "params": _jsonable(params),
                "deps": {d.name: d.key for d in deps},
                "outputs": _jsonable(outputs),
                "seconds": round(seconds, 3),
                "finished": _now(),
                # not in the key, but float sums depend on it: the same stage computed with
                # another thread count trains other weights (docs/user-guide.md, reproducibility)
                "torch_threads": torch.get_num_threads(),
                "checksums": checksum_tree(tmp, exclude=(STAGE_META,)),
            }
            atomic_write_json(tmp / STAGE_META, meta)
            final = self.stage_path(name, key)
            if final.exists():  # a damaged result (or files a user copied there): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._set_stage_status(
                name, status="failed", error=f"{type(exc).__name__}: {exc}", finished=_now()
            )
            self.log_event(
                "stage_failed", stage=name, key=key, error=f"{type(exc).__name__}: {exc}"
            )
            raise
        self._set_stage_status(
            name,
            status="done",
            seconds=round(seconds, 3),
            finished=_now(),
            path=self._relative(final),
            error=None,
        )
        self.log_event("stage_finished", stage=name, key=key, seconds=round(seconds, 3))
        return StageResult(name=name, key=key, path=final, meta=meta, cached=False)

    def clean_temp(self) -> int:
        """Remove leftovers of killed stages (those no live process is computing); returns how
        many were removed."""
        removed = 0
        if not self.stages_dir.is_dir():
            return 0
        for leftover in self.stages_dir.glob(".tmp-*"):
            match = _TMP_RE.match(leftover.name)
            lock = try_stage_lock(self.stages_dir, match["name"], match["key"]) if match else None
            if match and lock is None:  # being computed right now by another process
                continue
            try:
                shutil.rmtree(leftover, ignore_errors=True)
                removed += 1
            finally:
                if lock is not None:
                    lock.release()
        return removed
