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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from saadi_core.errors import SaadiError

MANIFEST = "manifest.json"
STAGE_META = "stage.json"


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
    ) -> "RunStore":
        """Open ``runs_dir/name``, creating it if needed. An existing run keeps its stage
        history (so it can resume); its config is replaced by ``config``.

        ``stages_dir`` shares stage results between runs (a study's arms): a stage with the same
        key — the same generator on the same data, the same real-only downstream model — is
        computed by the first run that needs it and found by the others."""
        if not name or "/" in name or name.startswith("."):
            raise SaadiError(f"invalid run name '{name}': use letters, digits, '-', '_' and '.'")
        store = cls(Path(runs_dir) / name, stages_dir=stages_dir)
        store.root.mkdir(parents=True, exist_ok=True)
        store.stages_dir.mkdir(parents=True, exist_ok=True)
        manifest = store._manifest or {"name": name, "created": _now(), "stages": {}}
        if stages_dir is not None:
            manifest["stages_dir"] = os.path.relpath(store.stages_dir, store.root)
        manifest["config"] = _jsonable(config)
        manifest["versions"] = _jsonable(versions or {})
        manifest["updated"] = _now()
        store._manifest = manifest
        store.write_manifest()
        return store

    @classmethod
    def open(cls, path: Path) -> "RunStore":
        """An existing run directory (for reports); a clear error if it is not one."""
        root = Path(path)
        if not (root / MANIFEST).is_file():
            raise SaadiError(f"not a saadi run directory (no {MANIFEST}): {root}")
        return cls(root)

    def _read_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SaadiError(f"cannot read run manifest {path}: {exc}") from None

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
        """The finished result of ``name`` with ``key``, if any."""
        path = self.stage_path(name, key)
        meta_file = path / STAGE_META
        if not meta_file.is_file():
            return None
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("key") != key:  # a 12-char prefix collision: treat as absent
            return None
        return StageResult(name=name, key=key, path=path, meta=meta, cached=True)

    def stage(
        self,
        name: str,
        params: dict[str, Any],
        fn: Callable[[Path], dict[str, Any] | None],
        deps: Sequence[StageResult] = (),
    ) -> StageResult:
        """Return the cached result of this stage or compute it.

        ``fn(tmp_dir)`` writes its files into ``tmp_dir`` and returns a JSON-serialisable summary
        (stored as ``outputs``). Only when it returns is the directory renamed into place; if it
        raises, the temporary directory is removed and the stage is marked failed.
        """
        key = content_key(name, params, [(d.name, d.key) for d in deps])
        from filelock import FileLock  # TEMP stage lock (issue 17 owns this): one computes, others wait and reuse

        locks = self.stages_dir.parent / ".stage-locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(locks / f"{name}-{key[:12]}.lock"):
            return self._stage_locked(name, key, params, fn, deps)

    def _stage_locked(self, name: str, key: str, params: dict[str, Any], fn: Callable[[Path], dict[str, Any] | None], deps: Sequence[StageResult]) -> StageResult:
        found = self.find(name, key)
        if found is not None:
            self._set_stage_status(name, key=key, status="done", cached=True, path=self._relative(found.path))
            self.log_event("stage_cached", stage=name, key=key)
            return found

        self.stages_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=self.stages_dir))
        started = time.perf_counter()
        self._set_stage_status(name, key=key, status="running", cached=False, started=_now())
        self.log_event("stage_started", stage=name, key=key)
        try:
            outputs = fn(tmp) or {}
            seconds = time.perf_counter() - started
            meta = {
                "name": name,
                "key": key,
                "params": _jsonable(params),
                "deps": {d.name: d.key for d in deps},
                "outputs": _jsonable(outputs),
                "seconds": round(seconds, 3),
                "finished": _now(),
            }
            atomic_write_json(tmp / STAGE_META, meta)
            final = self.stage_path(name, key)
            if final.exists():  # an unfinished leftover under the final name cannot happen via
                shutil.rmtree(final)  # this code, but a user may have copied files: replace it
            os.replace(tmp, final)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._set_stage_status(name, status="failed", error=f"{type(exc).__name__}: {exc}", finished=_now())
            self.log_event("stage_failed", stage=name, key=key, error=f"{type(exc).__name__}: {exc}")
            raise
        self._set_stage_status(
            name, status="done", seconds=round(seconds, 3), finished=_now(), path=self._relative(final), error=None
        )
        self.log_event("stage_finished", stage=name, key=key, seconds=round(seconds, 3))
        return StageResult(name=name, key=key, path=final, meta=meta, cached=False)

    def clean_temp(self) -> int:
        """Remove leftovers of killed stages; returns how many were removed."""
        removed = 0
        if self.stages_dir.is_dir():
            for leftover in self.stages_dir.glob(".tmp-*"):
                shutil.rmtree(leftover, ignore_errors=True)
                removed += 1
        return removed
