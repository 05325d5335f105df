"""Lifecycle hooks and code-versioned cache keys, with the in-process plugins of ``test_pipeline``.

A metric plugin that only implements hooks (no change to saadi) must reach the evaluate stage,
``summary.json``, the end-of-run output and the HTML report; two plugins giving the same entry
must be an error naming both; upgrading a plugin must recompute exactly the stages its code
computes (and what depends on them); ``--force-stage`` recomputes one stage."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from test_pipeline import FakePlugin, Opts, ShrinkAligner, SimpleThreshold
from test_pipeline import config as pipeline_config

from saadi_core import hookimpl
from saadi_core.config import ComponentSpec, build_run_config, validate_components
from saadi_core.errors import ConfigError, PluginError
from saadi_core.pipeline import run_pipeline
from saadi_core.registry import Registry

ALL_STAGES = {
    "data",
    "train-generator",
    "train-selector",
    "sample-base",
    "generate-pool",
    "score",
    "pair",
    "align",
    "sample-aligned",
    "evaluate",
    "fidelity-base",
    "fidelity-aligned",
    "fidelity-compare",
    "downstream-real-s0",
    "downstream-base-1x-s0",
    "downstream-aligned-1x-s0",
}


#: what a change to the pairing's code recomputes: the pairs and everything built on them
AFTER_PAIRING = {
    "pair",
    "align",
    "sample-aligned",
    "evaluate",
    "fidelity-aligned",
    "fidelity-compare",
    "downstream-aligned-1x-s0",
}


class RedMetric:
    """A third-party metric: the mean red channel of each variant's samples (the fake generator
    paints class colours, so the figure is a real function of the samples)."""

    @hookimpl
    def saadi_evaluate_samples(self, evaluation):
        return {
            "red": {
                v: float(sum(s.image[0].mean() for s in loaded) / len(loaded))
                for v, loaded in evaluation.samples.items()
            }
        }

    @hookimpl
    def saadi_summary_entries(self, run):
        return {"red_channel": run.outputs("evaluate")["red"]}

    @hookimpl
    def saadi_terminal_summary(self, summary, write):
        write(f"red channel: base {summary['red_channel']['base']:.4f}")

    @hookimpl
    def saadi_report_sections(self, run):
        return [("red", "Red channel", f"<p>red {run.summary['red_channel']['base']:.4f}</p>")]


class PairingPlugin:
    """The pairing of ``test_pipeline`` from a distribution of its own, to bump its version."""

    @hookimpl
    def saadi_register_pairings(self, register):
        register("simple2", SimpleThreshold, options=Opts)


def _registry(pairing_version: str = "1.0", metric_version: str | None = None) -> Registry:
    registry = Registry()
    registry.add_plugin(FakePlugin(), name="fake", version="1.0")
    registry.add_plugin(PairingPlugin(), name="pairing-dist", version=pairing_version)
    if metric_version is not None:
        registry.add_plugin(RedMetric(), name="red-metric", version=metric_version)
    return registry


def _flatten(value, path: str = "") -> dict:
    """``{"a.b.0": leaf}`` of nested dicts and lists, so every figure is compared on its own."""
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in _flatten(item, f"{path}.{key}").items()
        }
    if isinstance(value, list):
        return {
            k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{path}.{i}").items()
        }
    return {path: value}


def _recomputed(result) -> set[str]:
    return {name for name, stage in result.store.manifest["stages"].items() if not stage["cached"]}


def test_a_metric_plugin_reaches_summary_cli_and_report(tmp_path):
    from saadi_core.lifecycle import report_sections
    from saadi_core.report.data import load_run
    from saadi_core.summary import print_summary

    registry = _registry(metric_version="1.0")
    result = run_pipeline(pipeline_config(tmp_path), registry, quiet=True)
    summary = json.loads((result.store.root / "summary.json").read_text())
    red = summary["red_channel"]
    # the fake generator paints class colours (red 0.8 / -0.8 for two balanced classes) with an
    # error the aligner shrinks: the figures are the samples' own, not a constant
    assert (
        set(red) == {"base", "aligned"}
        and -0.8 < red["base"] < 0.8
        and red["base"] != red["aligned"]
    )
    assert (
        summary["selector_pass"]["verdict"] == "improved"
    )  # the built-in pass rates are still there
    # every figure the core and its built-in plugins report equals what the code before the stage
    # split and the lifecycle hooks reported for this run (recorded at commit 0f30f8f; since then
    # one figure was added: the h the score diagnostics were computed at)
    golden = json.loads((Path(__file__).parent / "data" / "fake_run_figures.json").read_text())
    now = _flatten({k: summary[k] for k in golden})
    assert now.keys() == _flatten(golden).keys()
    for path, value in _flatten(golden).items():
        assert now[path] == (
            pytest.approx(value, rel=1e-9) if isinstance(value, float) else value
        ), path
    console = Console(file=io.StringIO(), width=200)
    print_summary(result, console)
    assert f"red channel: base {red['base']:.4f}" in console.file.getvalue()
    # the report's plugin sections (the whole page with the example plugin: test_example_plugin)
    assert report_sections(registry, load_run(result.store.root)) == [
        ("red", "Red channel", f"<p>red {red['base']:.4f}</p>")
    ]
    stage = json.loads(
        (
            result.store.root / result.store.manifest["stages"]["evaluate"]["path"] / "stage.json"
        ).read_text()
    )
    assert stage["params"]["code"]["plugins"]["red-metric"] == "1.0"
    assert "saadi-core.pass-rates" in stage["params"]["code"]["plugins"]
    # --force-stage recomputes the named stage although it is cached
    assert _recomputed(
        run_pipeline(pipeline_config(tmp_path), registry, quiet=True, force_stages=["score"])
    ) == {"score"}


def test_two_plugins_giving_one_entry_is_an_error_naming_both():
    from saadi_core.lifecycle import merge

    merged = merge(
        [("a", {"x": 1, "warnings": ["w1"]}), ("b", {"y": 2, "warnings": ["w2"]}), ("c", None)],
        "hook",
    )
    assert merged == {"x": 1, "y": 2, "warnings": ["w1", "w2"]}
    with pytest.raises(PluginError, match="'x' is given by both plugin 'a' and plugin 'b'"):
        merge([("a", {"x": 1}), ("b", {"x": 2})], "hook")
    with pytest.raises(
        PluginError, match="'run' is given by both plugin 'saadi-core' and plugin 'b'"
    ):
        merge([("b", {"run": "elsewhere"})], "saadi_summary_entries", taken=["run"])


def test_a_plugin_version_bump_recomputes_its_stages_only(tmp_path):
    cfg = pipeline_config(tmp_path, pairing="simple2")
    assert _recomputed(run_pipeline(cfg, _registry("1.0"), quiet=True)) == ALL_STAGES
    # the pairing's code changed: pairs and everything built on them, nothing before or beside
    bumped = _recomputed(run_pipeline(cfg, _registry("1.1"), quiet=True))
    assert bumped == AFTER_PAIRING
    # a metric plugin upgraded: the evaluation alone is recomputed
    assert _recomputed(run_pipeline(cfg, _registry("1.1", metric_version="1.0"), quiet=True)) == {
        "evaluate"
    }
    assert _recomputed(run_pipeline(cfg, _registry("1.1", metric_version="2.0"), quiet=True)) == {
        "evaluate"
    }


def test_study_arm_kinds_are_answered_by_plugins_later_ones_first():
    """A plugin's arm kind answers before the built-ins: here arms named ``*-base`` contribute the
    base samples of their run although they align (the built-ins would say "aligned")."""
    from saadi_core.config import ArmConfig
    from saadi_core.study import arm_label

    class BaseOfAlignedArm:
        @hookimpl
        def saadi_study_arm_label(self, arm):
            return "base" if arm.name.endswith("-base") and arm.aligner is not None else None

    registry = Registry()
    arms = [
        ArmConfig(name="plain", generator={"kind": "ssd"}),
        ArmConfig(name="dpo", generator={"kind": "ssd"}, aligner={"kind": "diffusion-dpo"}),
        ArmConfig(name="both", mix=["plain", "dpo"]),
        ArmConfig(name="dpo-base", generator={"kind": "ssd"}, aligner={"kind": "diffusion-dpo"}),
    ]
    assert [arm_label(a, registry) for a in arms] == ["base", "aligned", "both", "aligned"]
    registry.add_plugin(BaseOfAlignedArm(), name="base-of-aligned")
    assert [arm_label(a, registry) for a in arms] == ["base", "aligned", "both", "base"]


def test_editing_a_plugins_files_recomputes_its_stages_only(tmp_path, monkeypatch):
    """An editable install keeps its version while its code changes: the digest of the plugin's
    files must recompute what that code computes — and an edit elsewhere must not."""
    from saadi_core.stages.keys import source_digest

    package = tmp_path / "src" / "edited_pairing"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from test_pipeline import SimpleThreshold\n\n\n"
        "class EditedThreshold(SimpleThreshold):\n    '''First version.'''\n"
    )
    (package / "__pycache__").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    from edited_pairing import EditedThreshold

    class EditedPairingPlugin:
        @hookimpl
        def saadi_register_pairings(self, register):
            register("simple2", EditedThreshold, options=Opts)

    def registry() -> Registry:
        source_digest.cache_clear()
        registry = Registry()
        registry.add_plugin(FakePlugin(), name="fake", version="1.0")
        registry.add_plugin(EditedPairingPlugin(), name="pairing-dist", version="1.0")
        return registry

    cfg = pipeline_config(tmp_path, pairing="simple2")
    assert _recomputed(run_pipeline(cfg, registry(), quiet=True)) == ALL_STAGES
    # bytecode is not source: nothing is recomputed
    (package / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert _recomputed(run_pipeline(cfg, registry(), quiet=True)) == set()
    # the same version, edited files: the pairs and what is built on them
    (package / "weights.bin").write_bytes(b"\1")
    assert _recomputed(run_pipeline(cfg, registry(), quiet=True)) == AFTER_PAIRING
    assert source_digest("saadi_core.pipeline") is None  # the core is keyed by its version
    assert source_digest("no_such_module_anywhere") is None


class HolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: list[ComponentSpec] = [ComponentSpec(kind="shrink-b")]


class Holder(ShrinkAligner):
    """An aligner holding others in its options, as ``sequence`` and ``iterative`` do."""

    def align(self, generator, inputs, work_dir):
        return ShrinkAligner(Opts(), self.context).align(generator, inputs, work_dir)


class HolderPlugin:
    @hookimpl
    def saadi_register_aligners(self, register):
        register("holder", Holder, options=HolderOptions)


class PartPlugin:
    @hookimpl
    def saadi_register_aligners(self, register):
        register("shrink-b", ShrinkAligner, options=Opts)


def _holder_registry(part_version: str) -> Registry:
    registry = _registry()
    registry.add_plugin(HolderPlugin(), name="holder-dist", version="1.0")
    registry.add_plugin(PartPlugin(), name="part-dist", version=part_version)
    return registry


def test_upgrading_a_plugin_an_aligner_holds_recomputes_the_alignment(tmp_path):
    """A ``sequence`` of third-party aligners: their plugins compute the align stage too, so
    upgrading one must recompute it and what is built on it, although the holder is unchanged."""
    cfg = pipeline_config(tmp_path, aligner="holder")
    first = run_pipeline(cfg, _holder_registry("1.0"), quiet=True)
    assert _recomputed(first) == ALL_STAGES
    stage = json.loads(
        (
            first.store.root / first.store.manifest["stages"]["align"]["path"] / "stage.json"
        ).read_text()
    )
    assert stage["params"]["code"]["plugins"]["part-dist"] == "1.0"
    assert _recomputed(run_pipeline(cfg, _holder_registry("1.1"), quiet=True)) == AFTER_PAIRING - {
        "pair"
    }


def test_a_typo_inside_a_held_aligner_fails_before_the_run(tmp_path):
    registry = _holder_registry("1.0")
    typo = {
        "kind": "holder",
        "options": {"parts": [{"kind": "shrink-b", "options": {"strenght": 1}}]},
    }
    with pytest.raises(
        ConfigError, match=r"aligner\.options\.parts\.0\.options\.strenght: unknown key"
    ):
        validate_components(build_run_config(None, {"aligner": typo})[0], registry)
    unknown = {"kind": "holder", "options": {"parts": [{"kind": "shrnk"}]}}
    with pytest.raises(PluginError, match="shrnk"):
        validate_components(build_run_config(None, {"aligner": unknown})[0], registry)


def test_a_plugin_spanning_two_packages_is_keyed_by_both(tmp_path, monkeypatch):
    """One distribution registering kinds from two top-level packages: editing either one must
    change the key (the digest of the package added last used to hide the other)."""
    from saadi_core.stages.keys import code_versions, source_digest

    for name in ("pkg_one", "pkg_two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            "from test_pipeline import ShrinkAligner as Aligner\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))

    class TwoPackages:
        @hookimpl
        def saadi_register_aligners(self, register):
            register("one", "pkg_one:Aligner", options=Opts)
            register("two", "pkg_two:Aligner", options=Opts)

    def sources() -> str:
        source_digest.cache_clear()
        registry = Registry()
        registry.add_plugin(TwoPackages(), name="two-dist", version="1.0")
        return code_versions(registry, [("aligner", "one"), ("aligner", "two")])["sources"][
            "two-dist"
        ]

    first = sources()
    (tmp_path / "pkg_one" / "data.bin").write_bytes(b"\1")
    second = sources()
    (tmp_path / "pkg_two" / "data.bin").write_bytes(b"\1")
    assert len({first, second, sources()}) == 3


class LoopOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: ComponentSpec = ComponentSpec(kind="loop")


class RewardOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reward: ComponentSpec = Field(
        default=ComponentSpec(kind="colour"), json_schema_extra={"saadi_category": "selector"}
    )


class OddHolders:
    @hookimpl
    def saadi_register_aligners(self, register):
        register("loop", Holder, options=LoopOptions)
        register("rewarded", Holder, options=RewardOptions)


def test_held_components_name_their_category_and_cannot_hold_themselves():
    from saadi_core.config import nested_kinds

    registry = _holder_registry("1.0")
    registry.add_plugin(OddHolders(), name="odd-dist", version="1.0")

    def check(aligner):
        return validate_components(build_run_config(None, {"aligner": aligner})[0], registry)

    # a selector held by an aligner is looked up, validated and keyed as a selector
    options = check("rewarded")["aligner"]
    assert nested_kinds("aligner", options, registry, "tiny") == [("selector", "colour")]
    with pytest.raises(PluginError, match=r"aligner\.options\.reward\.kind: .*shrink"):
        check({"kind": "rewarded", "options": {"reward": "shrink"}})
    with pytest.raises(ConfigError, match=r"aligner\.options\.inner: aligner 'loop' holds itself"):
        check("loop")
    with pytest.raises(ConfigError, match=r"aligner\.options\.parts\.0\.kind: required"):
        check({"kind": "holder", "options": {"parts": [{"options": {}}]}})
