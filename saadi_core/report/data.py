"""Reading what a run or study directory holds, tolerating whatever is missing.

A report is made from finished, half-finished and older runs alike, so every artefact is read into
either its value or a :class:`Missing` with the reason; the renderers show the reason instead of
the section. Only a path that is neither a run nor a study is a user error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saadi_core.errors import SaadiError
from saadi_core.stages.names import ALIGNMENT_STAGES, EVALUATE
from saadi_core.store import MANIFEST, StageNotFinished, finished_stage_dir

STUDY_FILE = "study.json"
#: stages only a run with an aligner has


@dataclass(frozen=True)
class Missing:
    """Why an artefact is not available (shown to the reader as is)."""

    reason: str


def read_json(path: Path, what: str) -> Any:
    """The parsed JSON in ``path`` or :class:`Missing` naming the file and the problem."""
    if not path.is_file():
        return Missing(f"{what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Missing(f"{what} unreadable ({path}: {exc})")


def detect(path: Path) -> str:
    """``"run"`` or ``"study"``; a one-line error for anything else."""
    path = Path(path)
    if not path.exists():
        raise SaadiError(f"report: no such directory: {path}")
    if not path.is_dir():
        raise SaadiError(f"report: not a directory: {path} (give a run or study directory)")
    if (path / STUDY_FILE).is_file():
        return "study"
    if (path / MANIFEST).is_file():
        return "run"
    raise SaadiError(
        f"report: {path} is neither a run ({MANIFEST}) nor a study ({STUDY_FILE}) directory"
    )


@dataclass
class Variant:
    """Evaluation samples of one variant (``base`` or ``aligned``) and their per-sample scores."""

    name: str
    samples: list[Any] | Missing
    scores: dict[str, Any] | Missing


@dataclass
class RunData:
    """Everything the run sections need, loaded lazily (samples load torch)."""

    root: Path
    manifest: dict[str, Any]
    summary: dict[str, Any] | Missing
    registry: Any = None
    #: rebuilt train splits by dataset spec, shared by the runs of one study (same real data)
    dataset_cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _samples: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.root.name)

    @property
    def task(self) -> str | None:
        dataset = self.manifest.get("dataset") or {}
        if dataset.get("task"):
            return dataset["task"]
        return self.summary.get("task") if isinstance(self.summary, dict) else None

    @property
    def aligned(self) -> bool:
        """Whether the run was configured with an aligner (a study's base arm is not)."""
        config = self.manifest.get("config") or {}
        return "aligner" not in config or bool(config.get("aligner"))

    @property
    def class_names(self) -> list[str]:
        return list((self.manifest.get("dataset") or {}).get("classes") or [])

    def stage_dir(self, stage: str) -> Path | Missing:
        """The directory of a finished stage, from the manifest (the latest result of that stage)."""
        absent = stage not in (self.manifest.get("stages") or {})
        if absent and stage in ALIGNMENT_STAGES and not self.aligned:
            return Missing(f"the run has no aligner (a base-only run), so no '{stage}' stage")
        try:
            return finished_stage_dir(self.root, self.manifest, stage)
        except StageNotFinished as err:
            return Missing(str(err))

    def stage_json(self, stage: str, filename: str) -> Any:
        directory = self.stage_dir(stage)
        if isinstance(directory, Missing):
            return directory
        return read_json(directory / filename, f"{stage}/{filename}")

    def artefact(self, filename: str, legacy_stage: str | None = None) -> Any:
        """A JSON result the run keeps at its root (``downstream.json``, ``fidelity.json``) or,
        in runs made before it moved there, inside ``legacy_stage``."""
        at_root = self.root / filename
        if at_root.is_file():
            return read_json(at_root, filename)
        if legacy_stage in (self.manifest.get("stages") or {}):
            return self.stage_json(legacy_stage, filename)
        return Missing(f"{filename} not found: the run has not produced these results (yet)")

    def samples(self, stage: str, sub: str = "") -> list[Any] | Missing:
        """Samples saved by a stage (``generate-pool``, ``evaluate/base`` …), loaded once."""
        key = f"{stage}/{sub}"
        if key not in self._samples:
            directory = self.stage_dir(stage)
            if isinstance(directory, Missing):
                self._samples[key] = directory
            else:
                self._samples[key] = _load_samples(directory / sub if sub else directory, key)
        return self._samples[key]

    def variant(self, name: str) -> Variant:
        return Variant(
            name=name,
            samples=self.samples(EVALUATE, name),
            scores=self.stage_json(EVALUATE, f"{name}/scores.json"),
        )

    @property
    def real_train(self) -> Any:
        """The dataset's train split, rebuilt from the manifest's config through the registry
        (the run directory does not copy the real images), or :class:`Missing`."""
        config = self.manifest.get("config") or {}
        spec = config.get("dataset") or {}
        kind = spec.get("kind")
        if not kind and isinstance(self.summary, dict):
            kind = (self.summary.get("components") or {}).get("dataset")
        if not kind:
            return Missing("the manifest does not name the dataset kind")
        cache_key = json.dumps(
            [kind, spec.get("options") or {}, config.get("profile", "tiny")], sort_keys=True
        )
        if cache_key not in self.dataset_cache:
            self.dataset_cache[cache_key] = self._rebuild_train(
                kind, spec.get("options") or {}, config.get("profile", "tiny")
            )
        return self.dataset_cache[cache_key]

    def _rebuild_train(self, kind: str, options: dict[str, Any], profile: str) -> Any:
        try:
            registry = self.registry
            if registry is None:
                from saadi_core.registry import get_registry

                registry = get_registry()
            entry = registry.get("dataset", kind)
            dataset = entry.load()(entry.build_options(options, profile))
            return dataset.train
        except (SaadiError, OSError, ValueError) as exc:
            return Missing(f"cannot rebuild dataset '{kind}' to show real images ({exc})")


def _load_samples(directory: Path, what: str) -> list[Any] | Missing:
    from saadi_core.samples_io import SAMPLES_FILE, load_samples

    if not (directory / SAMPLES_FILE).is_file():
        return Missing(f"{what}/{SAMPLES_FILE} not found")
    try:
        return load_samples(directory)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        return Missing(f"{what}/{SAMPLES_FILE} unreadable ({exc})")


def load_run(
    path: Path, registry: Any = None, dataset_cache: dict[str, Any] | None = None
) -> RunData:
    """A run directory; ``registry`` rebuilds its dataset (default: the installed plugins)."""
    path = Path(path)
    manifest = read_json(path / MANIFEST, "run manifest")
    if isinstance(manifest, Missing):
        raise SaadiError(f"report: {manifest.reason} in {path}")
    if not isinstance(manifest, dict):
        raise SaadiError(f"report: {path / MANIFEST} is not a JSON object")
    summary = read_json(path / "summary.json", "summary.json")
    return RunData(
        root=path,
        manifest=manifest,
        summary=summary,
        registry=registry,
        dataset_cache=dataset_cache if dataset_cache is not None else {},
    )


@dataclass
class StudyData:
    root: Path
    study: dict[str, Any]

    def run_path(self, recorded: str) -> Path | Missing:
        """A run directory named in ``study.json``: as recorded (absolute, or relative to the
        directory the study ran in), relative to the study directory or its parent, or by name in
        the study's own ``runs/`` folder (a study directory that was moved or copied)."""
        given = Path(recorded)
        candidates = (
            [given]
            if given.is_absolute()
            else [Path.cwd() / given, self.root / given, self.root.parent / given]
        )
        candidates.append(self.root / "runs" / given.name)
        for candidate in candidates:
            if (candidate / MANIFEST).is_file():
                return candidate
        return Missing(f"run directory not found: {recorded}")


def load_study(path: Path) -> StudyData:
    path = Path(path)
    study = read_json(path / STUDY_FILE, "study.json")
    if isinstance(study, Missing):
        raise SaadiError(f"report: {study.reason} in {path}")
    if not isinstance(study, dict):
        raise SaadiError(f"report: {path / STUDY_FILE} is not a JSON object")
    return StudyData(root=path, study=study)
