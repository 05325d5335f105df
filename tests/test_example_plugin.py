"""The third-party story end to end, plus every failure path of plugin loading.

The example distribution (``examples/saadi-plugin-example``) must be *installed* for its entry
point to exist. ``example_installed`` checks for it and, when missing, installs it editable with
``pip install --no-deps --no-build-isolation -e`` (offline, ~3 s); CI's ``.ci/run`` installs it
beforehand, which makes the fixture a no-op. Either way the install stays in the environment.

Failure paths use throwaway distributions written to ``tmp_path``: a ``*.dist-info`` directory
with ``entry_points.txt`` next to the plugin module, put on ``sys.path`` — exactly what an
installed wheel looks like to the ``entrypoints`` package.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from saadi_core import hookimpl
from saadi_core.config import RunConfig, load_config_file, validate_components
from saadi_core.conformance import check_pairing, check_selector, synthetic_scored_samples
from saadi_core.errors import (
    ConfigError,
    DataError,
    DuplicateKindError,
    PipelineError,
    PluginError,
    UnknownKindError,
)
from saadi_core.interfaces import Condition, Sample
from saadi_core.registry import Registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO / "examples" / "saadi-plugin-example"
EXAMPLE_DIST = "saadi-plugin-example"
EXAMPLE_KINDS = {"selector": ["example-tinycnn"], "pairing": ["example-top1"]}


@pytest.fixture(autouse=True)
def _plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the loading switches it is about; none inherits them from the shell."""
    monkeypatch.delenv("SAADI_STRICT", raising=False)
    monkeypatch.delenv("SAADI_LOAD_PLUGINS", raising=False)


@pytest.fixture(scope="module")
def example_installed() -> Iterator[str]:
    """The installed version of the example distribution (installing it first if needed)."""
    try:
        version = metadata.version(EXAMPLE_DIST)
    except metadata.PackageNotFoundError:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "-e",
                str(EXAMPLE_DIR),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            pytest.fail(f"installing {EXAMPLE_DIR} failed:\n{proc.stderr[-2000:]}")
        importlib.invalidate_caches()
        version = metadata.version(EXAMPLE_DIST)
    added = False
    if importlib.util.find_spec("saadi_plugin_example") is None:
        # Installed by this very process: the editable finder is activated by a .pth file, which
        # only new interpreters read. Point this one at the same source directory.
        sys.path.insert(0, str(EXAMPLE_DIR))
        added = True
    yield version
    if added:
        sys.path.remove(str(EXAMPLE_DIR))


def _clean_python(env: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SAADI_STRICT", "SAADI_LOAD_PLUGINS")}
    return {**base, **(env or {})}


# --------------------------------------------------------------------------- installed and listed


def test_saadi_plugins_json_lists_example(example_installed: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from saadi_core.cli import main; main()", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_python(),
    )
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    example = plugins["example"]
    assert example["status"] == "loaded", example["error"]
    assert example["version"] == example_installed == "0.1.0"
    assert example["module"] == "saadi_plugin_example.plugin"
    assert example["kinds"] == EXAMPLE_KINDS
    assert sorted(example["hooks"]) == [
        "saadi_evaluate_samples",
        "saadi_register_pairings",
        "saadi_register_selectors",
        "saadi_report_sections",
        "saadi_summary_entries",
        "saadi_terminal_summary",
    ]


def test_example_discovery_is_lazy(example_installed: str) -> None:
    """Listing the plugin imports neither torch nor the implementation modules."""
    script = textwrap.dedent(
        """
        import json, sys
        from saadi_core.registry import Registry
        registry = Registry.discover()
        entry = registry.get("selector", "example-tinycnn")
        entry.build_options({"epochs": 1})  # options are light too
        print(json.dumps(sorted(m for m in sys.modules if m == "torch" or m.startswith("saadi_plugin_example"))))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_python({"SAADI_LOAD_PLUGINS": "example"}),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        "saadi_plugin_example",
        "saadi_plugin_example.options",
        "saadi_plugin_example.plugin",
    ]


def test_registry_tags_example_kinds(example_installed: str) -> None:
    registry = Registry.discover(only=["example"])
    info = next(p for p in registry.plugins if p.name == "example")
    assert (info.status, info.kinds, info.version) == ("loaded", EXAMPLE_KINDS, example_installed)
    entry = registry.get("selector", "example-tinycnn")
    assert (entry.plugin, entry.version, entry.target) == (
        "example",
        "0.1.0",
        "saadi_plugin_example.selector:TinyCNN",
    )
    assert all(
        p.status == "skipped" for p in registry.plugins if not p.builtin and p.name != "example"
    )


# --------------------------------------------------------------------------- usable from config


class _DefaultAligner:
    """Registers the run config's default aligner kind: this file checks the example's kinds,
    and discovery is limited to the example, so the first-party aligner is not loaded."""

    @hookimpl
    def saadi_register_aligners(self, register):
        register("diffusion-dpo", "builtins:object")


@pytest.fixture
def example_registry(example_installed: str) -> Registry:
    registry = Registry.discover(only=["example"])
    registry.add_plugin(_DefaultAligner(), name="stand-in")
    return registry


def test_config_with_example_kinds_validates(example_registry: Registry) -> None:
    config = RunConfig(
        selector={"kind": "example-tinycnn", "options": {"epochs": 2}}, pairing="example-top1"
    )
    validated = validate_components(config, example_registry)
    assert type(validated["selector"]).__name__ == "TinyCNNOptions"
    assert (validated["selector"].epochs, validated["selector"].channels) == (2, 16)
    assert validated["pairing"].threshold == 0.5
    paper = validate_components(config.model_copy(update={"profile": "paper"}), example_registry)
    assert (paper["selector"].epochs, paper["selector"].channels) == (
        2,
        32,
    )  # explicit beats profile


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"epoch": 2}, "selector.options.epoch: unknown key"),
        ({"channels": 0}, "selector.options.channels"),
        ({"lr": "fast"}, "selector.options.lr"),
    ],
)
def test_config_rejects_bad_example_options(
    example_registry: Registry, options: dict, expected: str
) -> None:
    config = RunConfig(selector={"kind": "example-tinycnn", "options": options})
    with pytest.raises(ConfigError, match=expected):
        validate_components(config, example_registry)


def test_yaml_typo_in_example_options_names_file_and_line(
    example_registry: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        textwrap.dedent(
            """\
        selector:
          kind: example-tinycnn
          options: {epochs: 2}
        pairing:
          kind: example-top1
          options:
            treshold: 0.4
        """
        )
    )
    config, doc = load_config_file(path)
    with pytest.raises(ConfigError) as err:
        validate_components(config, example_registry, doc)
    assert str(err.value) == f"{path}:7: pairing.options.treshold: unknown key (check the spelling)"


def test_unknown_kind_lists_known_kinds(example_registry: Registry) -> None:
    config = RunConfig(selector="example-tinycnnn")
    with pytest.raises(
        UnknownKindError,
        match=r"unknown selector kind 'example-tinycnnn'; known: .*example-tinycnn",
    ):
        validate_components(config, example_registry)


# --------------------------------------------------------------------------- the kinds work


def test_example_selector_conforms(
    example_registry: Registry, saadi_tiny_dataset, saadi_context, tmp_path: Path
) -> None:
    selector = example_registry.create(
        "selector", "example-tinycnn", {"epochs": 3}, context=saadi_context
    )
    check_selector(selector, saadi_tiny_dataset, work_dir=tmp_path / "conformance")
    assert (tmp_path / "conformance" / "selector" / "model.pt").is_file()


def test_example_selector_refuses_what_it_cannot_score(
    example_registry: Registry, saadi_tiny_dataset, saadi_tiny_seg_dataset
) -> None:
    selector = example_registry.create("selector", "example-tinycnn", {"epochs": 1})
    with pytest.raises(PipelineError, match="must be fit or loaded"):
        selector.predict(saadi_tiny_dataset.test.image_tensor(slice(0, 2)))
    with pytest.raises(PipelineError, match="classification datasets only"):
        selector.fit(saadi_tiny_seg_dataset)
    selector.fit(saadi_tiny_dataset)
    unconditional = Sample(
        image=saadi_tiny_dataset.test.image_tensor(slice(0, 1))[0],
        condition=Condition(id="any"),
        generator="g",
        seed=0,
    )
    with pytest.raises(DataError, match="condition 'any'"):
        selector.score([unconditional])


def test_example_pairing_conforms_and_keeps_one_pair_per_condition(
    example_registry: Registry,
) -> None:
    strategy = example_registry.create("pairing", "example-top1")
    check_pairing(strategy)
    samples, scores = synthetic_scored_samples()
    result = strategy.pairs(samples, scores, seed=0)
    by_condition = {p.condition_id: (p.winner_score, p.loser_score) for p in result}
    assert by_condition == {"class:mixed": (0.9, 0.1), "class:ties": (0.8, 0.2)}
    assert result.stats["conditions_without_loser"] == ["class:all-high", "class:single"]
    assert result.stats["conditions_without_winner"] == ["class:all-low"]


def test_example_pairing_breaks_ties_by_seed(example_registry: Registry) -> None:
    strategy = example_registry.create("pairing", "example-top1")
    samples, scores = synthetic_scored_samples()
    chosen = set()
    for seed in range(8):
        pair = next(
            p for p in strategy.pairs(samples, scores, seed) if p.condition_id == "class:ties"
        )
        chosen.add((pair.winner.index, pair.loser.index))
    assert len(chosen) > 1  # three tied winners, three tied losers: seeds pick different ones


# --------------------------------------------------------------------------- failure paths of loading


@pytest.fixture
def fake_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., None]]:
    """``make(dist, {entry_name: module_source})`` writes an installed-looking distribution whose
    ``saadi`` entry points name modules ``<entry_name>_plugin``, and puts it on ``sys.path``."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []

    def make(dist: str, plugins: dict[str, str], version: str = "1.0") -> None:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"  # as wheels name it
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = [f"{name} = {name}_plugin" for name in plugins]
        (info / "entry_points.txt").write_text("[saadi]\n" + "\n".join(lines) + "\n")
        for name, source in plugins.items():
            (site / f"{name}_plugin.py").write_text(textwrap.dedent(source))
            created.append(f"{name}_plugin")
        importlib.invalidate_caches()

    yield make
    for module in created:
        sys.modules.pop(module, None)


GOOD_PLUGIN = """
    from saadi_core import hookimpl

    @hookimpl
    def saadi_register_selectors(register):
        register("{kind}", "builtins:object", description="from {name}")
"""
BROKEN_PLUGIN = """
    raise ImportError("needs libfoo, which is not installed")
"""


def test_plugin_whose_import_fails_is_recorded_and_discovery_goes_on(fake_distribution) -> None:
    fake_distribution(
        "fake-dist",
        {
            "fakebroken": BROKEN_PLUGIN,
            "fakegood": GOOD_PLUGIN.format(kind="fake-good", name="fakegood"),
        },
    )
    registry = Registry.discover()
    infos = {p.name: p for p in registry.plugins}
    assert infos["fakebroken"].status == "failed"
    assert (
        infos["fakebroken"].error
        == "import failed: ImportError: needs libfoo, which is not installed"
    )
    assert (infos["fakebroken"].distribution, infos["fakebroken"].version) == ("fake_dist", "1.0")
    assert infos["fakegood"].status == "loaded"
    assert registry.get("selector", "fake-good").plugin == "fakegood"
    with pytest.raises(UnknownKindError, match="plugins that failed to load: .*fakebroken"):
        registry.get("selector", "needs-libfoo")


def test_strict_makes_a_broken_plugin_fatal(
    fake_distribution, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution("fake-dist", {"fakebroken": BROKEN_PLUGIN})
    monkeypatch.setenv("SAADI_STRICT", "1")
    monkeypatch.setenv("SAADI_LOAD_PLUGINS", "fakebroken")
    with pytest.raises(
        PluginError,
        match=r"plugin 'fakebroken' \(fakebroken_plugin\): import failed: .*needs libfoo.*SAADI_STRICT=1",
    ):
        Registry.discover()


def test_load_plugins_env_limits_what_is_imported(
    fake_distribution, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(
        "fake-dist",
        {
            "fakebroken": BROKEN_PLUGIN,
            "fakegood": GOOD_PLUGIN.format(kind="fake-good", name="fakegood"),
        },
    )
    monkeypatch.setenv("SAADI_LOAD_PLUGINS", "fakegood")
    registry = Registry.discover()
    statuses = {p.name: p.status for p in registry.plugins if not p.builtin}
    assert statuses.pop("fakegood") == "loaded"
    assert set(statuses.values()) == {"skipped"} and "fakebroken" in statuses
    assert (
        next(p for p in registry.plugins if p.name == "fakebroken").error
        == "not in SAADI_LOAD_PLUGINS"
    )
    assert "fakebroken_plugin" not in sys.modules  # skipped plugins are never imported


def test_duplicate_kind_names_both_plugins(
    fake_distribution, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution("dist-a", {"fakea": GOOD_PLUGIN.format(kind="same-kind", name="fakea")})
    fake_distribution("dist-b", {"fakeb": GOOD_PLUGIN.format(kind="same-kind", name="fakeb")})
    monkeypatch.setenv("SAADI_LOAD_PLUGINS", "fakea,fakeb")
    registry = Registry.discover()
    with pytest.raises(DuplicateKindError, match="'fakea', 'fakeb'"):
        registry.get("selector", "same-kind")
    second = next(p for p in registry.plugins if p.name == "fakeb")
    assert "registered by both plugin 'fakea' and plugin 'fakeb'" in second.error
    monkeypatch.setenv("SAADI_STRICT", "1")
    with pytest.raises(DuplicateKindError, match="plugin 'fakea' and plugin 'fakeb'"):
        Registry.discover()


def _module(name: str, **functions) -> types.ModuleType:
    module = types.ModuleType(name)
    for attr, fn in functions.items():
        setattr(module, attr, hookimpl(fn))
    return module


class _LooseOptions(BaseModel):
    epochs: int = 1  # no extra="forbid": a typo such as `epoch` would be silently ignored


class _StrictOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = 1


def test_options_model_without_forbid_is_rejected() -> None:
    def saadi_register_selectors(register):
        register("loose", "builtins:object", options=_LooseOptions)
        register("strict", "builtins:object", options=_StrictOptions)

    registry = Registry(strict=False)
    registry.add_plugin(
        _module("loose_plugin", saadi_register_selectors=saadi_register_selectors),
        name="loose-plugin",
    )
    assert registry.get("selector", "strict").build_options({"epochs": 3}).epochs == 3
    with pytest.raises(
        PluginError,
        match="plugin 'loose-plugin': options model _LooseOptions of selector 'loose' must set extra='forbid'",
    ):
        registry.create("selector", "loose", {"epoch": 3})


def test_failed_registration_commits_no_kind() -> None:
    def saadi_register_selectors(register):
        register("fine-kind", "builtins:object")
        register("Not A Kind", "builtins:object")

    registry = Registry(strict=False)
    info = registry.add_plugin(
        _module("half_plugin", saadi_register_selectors=saadi_register_selectors), name="half"
    )
    assert info.status == "failed" and "'Not A Kind' must be lower-case" in info.error
    assert "fine-kind" not in registry.kinds("selector")


# --------------------------------------------------------------------------- a third-party metric


@pytest.mark.slow
def test_example_metric_in_summary_cli_and_report(example_installed: str, tmp_path: Path) -> None:
    """The example's contrast metric, installed and nothing else changed, reaches summary.json, the
    end-of-run output and the HTML report of a cut-down `saadi run` (sizes as test_end_to_end)."""
    small = [
        "dataset.options.n_train=100",
        "dataset.options.n_test=50",
        "generator.options.max_steps=20",
        "selector.options.epochs=1",
        "aligner.options.steps=4",
        "aligner.options.validate_every=2",
        "pool.n_per_condition=8",
        "evaluation.n_per_condition=8",
        "downstream.options.epochs=1",
        "fidelity.metrics=[]",
    ]
    cmd = [
        sys.executable,
        "-m",
        "saadi_core.cli",
        "--quiet",
        "run",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "m",
        "--generator",
        "ssd",
        "--selector",
        "resnet18",
        "--pairing",
        "best-worst",
    ]
    for assignment in small:
        cmd += ["--set", assignment]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=_clean_python())
    assert done.returncode == 0, done.stderr[-3000:]
    contrast = json.loads((tmp_path / "m" / "summary.json").read_text())["example_contrast"]
    assert (
        0.0 < contrast["base"]["mean"] < 0.5
        and contrast["base"]["n"] == contrast["aligned"]["n"] > 0
    )
    assert contrast["change"]["difference"] == pytest.approx(
        contrast["aligned"]["mean"] - contrast["base"]["mean"]
    )
    assert f"example contrast (RMS grey level): base {contrast['base']['mean']:.4f}" in " ".join(
        done.stdout.split()
    )
    report = subprocess.run(
        [sys.executable, "-m", "saadi_core.cli", "report", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=600,
        env=_clean_python(),
    )
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "m" / "report.html").read_text()
    assert 'id="example-contrast"' in html and f"{contrast['base']['mean']:.4f}" in html
