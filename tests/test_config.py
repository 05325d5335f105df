"""Config: strict models, YAML line numbers in errors, CLI flags and YAML build the same model."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import BaseModel, ConfigDict

from saadi_core import hookimpl
from saadi_core.config import (
    RunConfig,
    StudyConfig,
    build_run_config,
    load_config_file,
    parse_assignment,
    validate_components,
)
from saadi_core.errors import ConfigError, UnknownKindError
from saadi_core.registry import Registry


class GenOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = 10
    lr: float = 1e-3


class _Plugin:
    @hookimpl
    def saadi_register_generators(self, register):
        register(
            "fake-gen", "builtins:object", options=GenOptions, profiles={"paper": {"steps": 3000}}
        )

    @hookimpl
    def saadi_register_datasets(self, register):
        register("fake-data", "builtins:object")

    @hookimpl
    def saadi_register_pairings(self, register):  # the RunConfig defaults
        register("threshold", "builtins:object")

    @hookimpl
    def saadi_register_aligners(self, register):
        register("diffusion-dpo", "builtins:object")


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.add_plugin(_Plugin(), name="fake")
    return reg


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_typo_in_yaml_key_names_key_and_line(tmp_path):
    path = write(
        tmp_path,
        """\
        profile: tiny
        pool:
          n_per_condtion: 4
        """,
    )
    with pytest.raises(ConfigError) as exc:
        load_config_file(path)
    assert f"{path}:3" in str(exc.value)
    assert "pool.n_per_condtion" in str(exc.value)
    assert "unknown key" in str(exc.value)


def test_bad_value_points_at_its_line(tmp_path):
    path = write(tmp_path, "seed: 1\nprofile: huge\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: profile: unknown profile 'huge'"):
        load_config_file(path)


def test_invalid_yaml_and_missing_file(tmp_path):
    path = write(tmp_path, "generator: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config_file(tmp_path / "nope.yaml")


def test_component_options_checked_against_plugin_model_with_line(tmp_path, registry):
    path = write(
        tmp_path,
        """\
        dataset: fake-data
        generator:
          kind: fake-gen
          options:
            stepz: 5
        """,
    )
    config, doc = load_config_file(path)
    with pytest.raises(ConfigError) as exc:
        validate_components(config, registry, doc)
    assert f"{path}:5: generator.options.stepz: unknown key" in str(exc.value)


def test_unknown_kind_lists_known_and_line(tmp_path, registry):
    path = write(tmp_path, "dataset: fake-data\ngenerator:\n  kind: nope\n")
    config, doc = load_config_file(path)
    with pytest.raises(UnknownKindError) as exc:
        validate_components(config, registry, doc)
    assert f"{path}:3" in str(exc.value)
    assert "unknown generator kind 'nope'; known: fake-gen" in str(exc.value)


def test_profile_defaults_and_user_options(registry):
    config, _ = build_run_config(
        None,
        {
            "profile": "paper",
            "dataset": "fake-data",
            "generator": {"kind": "fake-gen", "options": {"lr": 0.5}},
        },
    )
    options = validate_components(config, registry)
    assert options["generator"].steps == 3000 and options["generator"].lr == 0.5
    config, _ = build_run_config(None, {"dataset": "fake-data", "generator": "fake-gen"})
    assert validate_components(config, registry)["generator"].steps == 10


def test_cli_flags_and_yaml_build_the_same_model(tmp_path):
    path = write(
        tmp_path,
        """\
        profile: tiny
        seed: 3
        generator: {kind: ssd, options: {max_steps: 50}}
        selector: resnet50
        """,
    )
    from_yaml, _ = build_run_config(path)
    overrides = {}
    for a in (
        "seed=3",
        "generator.kind=ssd",
        "generator.options.max_steps=50",
        "selector.kind=resnet50",
    ):
        from saadi_core.config import deep_merge

        overrides = deep_merge(overrides, parse_assignment(a))
    from_flags, _ = build_run_config(None, overrides)
    assert from_yaml == from_flags
    # flags override the file
    mixed, _ = build_run_config(path, {"seed": 9})
    assert mixed.seed == 9 and mixed.generator.options == {"max_steps": 50}


def test_parse_assignment_types_and_errors():
    assert parse_assignment("a.b=3") == {"a": {"b": 3}}
    assert parse_assignment("x=[1, 2]") == {"x": [1, 2]}
    assert parse_assignment("flag=true") == {"flag": True}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("novalue")


def test_env_prefix_sets_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("SAADI_RUNS_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("SAADI_PROFILE", "paper")
    config = RunConfig()
    assert config.runs_dir == tmp_path / "elsewhere" and config.profile == "paper"


def test_study_config_checks_arms(tmp_path):
    path = write(
        tmp_path,
        """\
        name: s
        arms:
          - {name: a, generator: ssd}
          - {name: m, mix: [a, ghost]}
        """,
    )
    with pytest.raises(ConfigError, match="mixes unknown arms: ghost"):
        load_config_file(path)
    path = write(
        tmp_path, "name: s\narms:\n  - {name: a, generator: ssd}\n  - {name: b, mix: [a]}\n"
    )
    config, _ = load_config_file(path)
    assert isinstance(config, StudyConfig) and [a.name for a in config.arms] == ["a", "b"]
    with pytest.raises(ConfigError, match="exactly one of 'generator' or 'mix'"):
        load_config_file(write(tmp_path, "name: s\narms:\n  - {name: x}\n"))


def test_set_options_merge_into_default_and_bare_kinds(tmp_path):
    config, _ = build_run_config(None, parse_assignment("dataset.options.n_train=100"))
    # no kind yet: the run picks the toy set of the generator's task and keeps these options
    assert config.dataset.kind is None and config.dataset.options == {"n_train": 100}
    path = write(tmp_path, "generator: ssd\n")
    config, _ = build_run_config(path, parse_assignment("generator.options.max_steps=5"))
    assert config.generator.kind == "ssd" and config.generator.options == {"max_steps": 5}
    # no kind: the run fills in the task's default selector (tests/test_pipeline.py checks that)
    config, _ = build_run_config(None, parse_assignment("selector.options.epochs=1"))
    assert config.selector.kind is None and config.selector.options == {"epochs": 1}
