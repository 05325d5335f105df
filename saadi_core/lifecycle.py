"""Calling the lifecycle hooks (:mod:`saadi_core.hookspecs`) and merging what plugins return.

The arguments the hooks receive are defined here (:class:`Evaluation`, :class:`RunOutputs`), so a
plugin author reads one module to know what they get. Implementations are called in plugin
registration order — built-ins first — and each result is attributed to its plugin, so a clash
of keys names both plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from saadi_core.errors import PluginError
from saadi_core.interfaces import Sample, Selector
from saadi_core.store import StageResult

#: entries whose lists several plugins extend instead of owning
SHARED_LISTS = ("warnings",)


@dataclass
class Evaluation:
    """What ``saadi_evaluate_samples`` receives: the held-out samples of every variant as the
    ``evaluate`` stage loaded and scored them (same order as the variant's ``samples.pt``)."""

    dataset: Any
    selector: Selector
    samples: dict[str, list[Sample]]
    scores: dict[str, list[float]]
    selector_pass: dict[str, list[bool]]
    #: the dataset oracle's verdict per sample; ``None`` per variant on real data
    oracle_pass: dict[str, list[bool] | None]
    threshold: float
    seed: int
    warn: Callable[[str], None] = print

    @property
    def variants(self) -> list[str]:
        return list(self.samples)

    @property
    def paired(self) -> bool:
        """Whether there is an aligned variant to compare with base."""
        return "base" in self.samples and "aligned" in self.samples


@dataclass
class RunOutputs:
    """What ``saadi_summary_entries`` receives: the finished stages of one run."""

    root: Path
    task: str
    #: the variants whose held-out samples the run has: ``["base"]`` or ``["base", "aligned"]``
    variants: list[str]
    stages: dict[str, StageResult] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def outputs(self, stage: str) -> dict[str, Any]:
        """A stage's reported outputs; ``{}`` when the stage did not run."""
        found = self.stages.get(stage)
        return found.outputs if found is not None else {}


def implementations(registry: Any, hook: str) -> list[Any]:
    """The implementations of ``hook`` in plugin registration order (pluggy calls them in reverse)."""
    return list(getattr(registry.pm.hook, hook).get_hookimpls())


def hook_plugins(registry: Any, hook: str) -> list[Any]:
    """The :class:`~saadi_core.registry.PluginInfo` of every plugin implementing ``hook``."""
    names = {impl.plugin_name for impl in implementations(registry, hook)}
    return [info for info in registry.plugins if info.name in names]


def merge(
    results: Iterable[tuple[str, dict[str, Any] | None]], what: str, taken: Iterable[str] = ()
) -> dict[str, Any]:
    """Merge ``(plugin, entries)`` pairs: every key owned by one plugin, ``warnings`` extended;
    a key in ``taken`` (the core's own entries) or given twice is a :class:`PluginError`."""
    merged: dict[str, Any] = {}
    owner = dict.fromkeys(taken, "saadi-core")
    for plugin, entries in results:
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise PluginError(
                f"plugin '{plugin}' returned {type(entries).__name__} from {what}; expected a dict or None"
            )
        for key, value in entries.items():
            if key in SHARED_LISTS:
                merged.setdefault(key, []).extend(value)
            elif key in owner:
                raise PluginError(
                    f"{what}: entry '{key}' is given by both plugin '{owner[key]}' and plugin '{plugin}'"
                )
            else:
                owner[key] = plugin
                merged[key] = value
    return merged


def evaluate_samples(registry: Any, evaluation: Evaluation) -> dict[str, Any]:
    """Every plugin's ``saadi_evaluate_samples``, merged."""
    impls = implementations(registry, "saadi_evaluate_samples")
    return merge(
        ((i.plugin_name, i.function(evaluation=evaluation)) for i in impls),
        "saadi_evaluate_samples",
    )


def summary_entries(registry: Any, run: RunOutputs) -> dict[str, Any]:
    """Every plugin's ``saadi_summary_entries``, merged (core entries cannot be replaced)."""
    impls = implementations(registry, "saadi_summary_entries")
    taken = [k for k in run.summary if k not in SHARED_LISTS]
    return merge(
        ((i.plugin_name, i.function(run=run)) for i in impls), "saadi_summary_entries", taken
    )


def terminal_summary(registry: Any, summary: dict[str, Any], write: Callable[[str], None]) -> None:
    for impl in implementations(registry, "saadi_terminal_summary"):
        impl.function(summary=summary, write=write)


def report_sections(registry: Any, run: Any) -> list[tuple[str, str, str]]:
    """Every plugin's extra report sections; a failing plugin loses its sections (with a note)."""
    sections: list[tuple[str, str, str]] = []
    for impl in implementations(registry, "saadi_report_sections"):
        try:
            sections.extend(impl.function(run=run) or [])
        except Exception as exc:  # noqa: BLE001 - a plugin's bug must cost its section, not the report
            note = escape(f"not available: {type(exc).__name__}: {exc}")
            sections.append(
                (f"plugin-{impl.plugin_name}", f"Plugin {impl.plugin_name}", f"<p>{note}</p>")
            )
    return sections


def study_arm_label(registry: Any, arm: Any) -> str:
    """The synthetic-set label of a study arm, from the first plugin that knows its kind."""
    label = registry.pm.hook.saadi_study_arm_label(arm=arm)
    if label is None:
        raise PluginError(f"no plugin knows the kind of study arm '{arm.name}'")
    return label
