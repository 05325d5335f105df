"""Run and study configuration.

One pydantic model, :class:`RunConfig`, describes a run whether it comes from CLI flags, a YAML
file or both (flags override the file); :class:`StudyConfig` describes several arms on one dataset.
Every model forbids unknown keys, and :func:`load_config_file` reports a typo with the key's
dotted path *and* its line in the YAML file. Component options (``{kind, options}``) are checked
against the plugin's own ``Options`` model by :func:`validate_components`, with the same
file-and-line reporting, before any stage runs.

Profiles: ``tiny`` (default) is the embedded CPU setting; ``paper`` is the paper's setting and
expects local pretrained weights. A profile is a name that plugins map to option defaults
(``register(..., profiles={"paper": {...}})``) — the core holds no model settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from saadi_core.errors import ConfigError, SaadiError

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.registry import Registry

PROFILES = ("tiny", "paper")
#: device names a run accepts (checked when the config is read, so `saadi validate` knows too)
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _check_device(value: str) -> str:
    if not DEVICE_RE.match(value):
        raise ValueError(f"unknown device '{value}'; use auto, cpu, cuda, cuda:N or mps")
    return value


#: the experiment trackers ``log_with`` may name (saadi_core.tracking)
TrackerName = Literal["tensorboard", "mlflow", "wandb"]


class Strict(BaseModel):
    """Base for all config models: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Settings(BaseSettings):
    """Process-wide defaults from the environment (prefix ``SAADI_``), e.g. ``SAADI_RUNS_DIR``."""

    model_config = SettingsConfigDict(env_prefix="SAADI_", extra="ignore")

    runs_dir: Path = Path("runs")
    profile: str = "tiny"
    device: str = "auto"


class ComponentSpec(Strict):
    """``{kind: ssi, options: {...}}``; a bare string ``"ssi"`` is accepted as ``{kind: ssi}``.

    ``kind`` may be left out where a run fills it in: the dataset becomes the embedded toy set of
    the task the generator/selector need, the generator and selector get the dataset task's
    default kind, the downstream model the selector's — so ``--set
    generator.options.max_steps=10`` works without naming the generator."""

    kind: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


class PoolConfig(Strict):
    """The generated pool G_s that the selector scores."""

    n_per_condition: int | None = Field(
        default=None,
        ge=1,
        description="samples per condition; None = the profile's pool size (tiny 640, paper 3072) spread over the conditions",
    )
    seed: int = Field(default=1000, description="seed of the pool; evaluation uses different seeds")
    min_winners: int = Field(
        default=0,
        ge=0,
        description="adaptive pool: keep sampling a condition until it has this many samples scoring >= h AND this "
        "many < h (rare or hard conditions otherwise give no pairs); 0 = off",
    )
    max_per_condition: int | None = Field(
        default=None,
        ge=1,
        description="adaptive pool: cap on a condition's samples; None = 4x the initial count",
    )


DownstreamBudget = Literal["steps", "epochs"]
EvaluationConditions = Literal["auto", "training", "unseen-layouts"]


class EvaluationConfig(Strict):
    """How base and aligned generators are compared and the downstream model trained."""

    n_per_condition: int | None = Field(
        default=None, ge=1, description="held-out samples per condition for pass rates"
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="h of the selector pass rate; None = the pairing's threshold (if it has none, the task default: 0.5 cls, 0.9 seg)",
    )
    conditions: EvaluationConditions = Field(
        default="auto",
        description="what the evaluation samples are generated on: 'training' = the generator's pool conditions "
        "(training masks, class prompts); 'unseen-layouts' = the same kind of conditions built from the dataset's "
        "unseen layouts (toy-seg has them), so a sample cannot pass by reproducing its mask's training image; "
        "'auto' = unseen layouts when the dataset has them, else training",
    )
    layouts: int | None = Field(
        default=None,
        ge=1,
        description="with unseen layouts: generate the evaluation samples on the first N of them, one condition each "
        "(samples per condition shrink to keep the total), and validate aligners on the rest; None = the generator's "
        "own pick (ssi: n_conditions). The samples of one layout pass or fail together, so many layouts with few "
        "samples each measure rendering more precisely",
    )
    seed: int = Field(
        default=2000, description="seed for base-vs-aligned comparison samples (same for both)"
    )
    scales: list[float] = Field(
        default_factory=lambda: [1.0],
        description="synthetic amount as multiples of the real train size",
    )
    downstream_seeds: list[int] = Field(
        default_factory=lambda: [0],
        description="one downstream model per seed (and per synthetic set); [] = none: the generators are "
        "compared on their samples alone (pass rates, fidelity), in a fraction of the time",
    )
    downstream_variants: list[Literal["base", "aligned"]] = Field(
        default_factory=lambda: ["base", "aligned"],
        description="synthetic sets that each train a downstream model next to real-only (a study arm trains only its own)",
    )
    downstream_budget: DownstreamBudget = Field(
        default="steps",
        description="'steps': a downstream model trained on real + synthetic data makes as many optimiser steps as "
        "the real-only one (its epochs scaled by |real| / (|real| + |synthetic|)), so a difference comes from "
        "the data, not from longer training; 'epochs': every model trains the same epochs (more steps with more data)",
    )
    downstream_real: int | None = Field(
        default=None,
        ge=1,
        description="real training images each downstream model sees: a class-balanced subset of the train split, the "
        "same for every variant and seed (synthetic counts scale with it); None = the whole split. Fewer than the "
        "generator and selector saw leaves a downstream model room to gain from synthetic data",
    )

    @field_validator("scales")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if not value or any(s <= 0 for s in value):
            raise ValueError("scales must be a non-empty list of positive numbers")
        return value


class FidelityConfig(Strict):
    """Fidelity metrics of the base and aligned samples against the real training images."""

    metrics: list[str] | None = Field(
        default=None,
        description="metric kinds to compute (saadi plugins lists them); null = all registered, [] = off",
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="options per metric kind"
    )
    inception_weights: Path | None = Field(
        default=None,
        description="local Inception-v3 weights for FID/KID features; null = the trained selector's backbone "
        "(labelled as such: not comparable with published FID)",
    )


class RunConfig(Strict):
    """Everything ``saadi run`` needs. ``None`` components are filled from the dataset's task
    (classification: ssd + resnet18; segmentation: ssi + segformer) when the run starts."""

    name: str | None = Field(
        default=None, description="run directory name; default built from the components"
    )
    profile: str = Field(default_factory=lambda: Settings().profile)
    seed: int = 0
    runs_dir: Path = Field(default_factory=lambda: Settings().runs_dir)
    device: str = Field(
        default_factory=lambda: Settings().device, description="auto | cpu | cuda | cuda:N"
    )
    dataset: ComponentSpec = Field(
        default_factory=ComponentSpec,
        description="no kind = the embedded toy set of the task the generator/selector need (toy-seg for ssi or a "
        "segmenter, else toy-cls)",
    )
    generator: ComponentSpec | None = None
    selector: ComponentSpec | None = None
    pairing: ComponentSpec = Field(
        default_factory=ComponentSpec,
        description="no kind = the task default (threshold; h 0.5 cls, 0.9 seg)",
    )
    aligner: ComponentSpec | None = Field(
        default_factory=lambda: ComponentSpec(kind="diffusion-dpo"),
        description="null = no alignment: the base generator's samples only (a study's base arm)",
    )
    downstream: ComponentSpec | None = Field(
        default=None, description="downstream task model; default: the selector's kind"
    )
    pool: PoolConfig = Field(default_factory=PoolConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    fidelity: FidelityConfig = Field(default_factory=FidelityConfig)
    log_with: list[TrackerName] = Field(
        default_factory=list,
        description="experiment trackers that receive the run's curves, timings and summary (saadi_core.tracking)",
    )
    strict_keys: bool = Field(
        default=False,
        description="also key every stage by the torch thread count and the device computing it, so a result is "
        "reused only where it would be recomputed bit for bit (float sums depend on both); off = one run's stages "
        "serve every thread count, as studies that reuse a single run's stages need",
    )

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown profile '{value}'; known: {', '.join(PROFILES)}")
        return value

    _known_device = field_validator("device")(_check_device)

    def run_name(self) -> str:
        if self.name:
            return self.name
        parts = [
            self.dataset.kind,
            getattr(self.generator, "kind", None),
            getattr(self.selector, "kind", None),
            self.profile,
        ]
        return "-".join(p for p in parts if p)

    def components(self) -> dict[str, ComponentSpec]:
        """Component specs that are set, keyed by their config field (= category name)."""
        specs = {
            "dataset": self.dataset,
            "generator": self.generator,
            "selector": self.selector,
            "pairing": self.pairing,
            "aligner": self.aligner,
            "downstream": self.downstream,
        }
        return {k: v for k, v in specs.items() if v is not None}


class ArmConfig(Strict):
    """One arm of a study: a generator (optionally aligned) or a mix of other arms' synthetic data."""

    name: str
    generator: ComponentSpec | None = None
    aligner: ComponentSpec | None = None
    mix: list[str] | None = Field(
        default=None, description="names of other arms whose synthetic data is mixed"
    )
    filter: bool = Field(
        default=False,
        description="keep only the generator's (or, with an aligner, the aligned generator's) samples the selector "
        "scores >= h, topped up to the same count per condition (the 'filter' baseline)",
    )
    control: bool = Field(
        default=False,
        description="the control arm (usually `aligner: train-longer`): the evidence table compares every other "
        "arm's oracle pass (paired McNemar, same evaluation seeds) and downstream metric (paired CI) with it",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ArmConfig:
        if (self.generator is None) == (self.mix is None):
            raise ValueError(f"arm '{self.name}' needs exactly one of 'generator' or 'mix'")
        if self.filter and self.mix is not None:
            raise ValueError(f"arm '{self.name}': filter applies to a generator arm, not a mix")
        if self.control and (self.aligner is None or self.filter):
            raise ValueError(
                f"arm '{self.name}': a control arm is an aligned generator without filter "
                "(e.g. aligner: train-longer), compared sample by sample with the other arms"
            )
        return self


class StudyConfig(Strict):
    """``saadi study``: several arms on one dataset with shared splits, seeds and downstream model.

    Every study seed is one replicate of the whole loop (run seed = downstream seed); ``scales``
    are the synthetic amounts (× the real train size) each arm's downstream model is trained
    with, next to the real-only baseline every comparison is made against."""

    name: str
    profile: str = "tiny"
    runs_dir: Path = Field(default_factory=lambda: Settings().runs_dir)
    device: str = "auto"
    dataset: ComponentSpec = Field(
        default_factory=ComponentSpec, description="no kind = the toy set of the arms' task"
    )
    selector: ComponentSpec | None = None
    pairing: ComponentSpec = Field(
        default_factory=ComponentSpec, description="no kind = the task default"
    )
    downstream: ComponentSpec | None = None
    pool: PoolConfig = Field(default_factory=PoolConfig)
    fidelity: FidelityConfig = Field(default_factory=FidelityConfig)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    downstream_seeds: int = Field(
        default=1,
        ge=0,
        description="downstream models per study seed (seeds s, s+100, s+200, ...): a generator seed's "
        "samples are judged over several downstream trainings; 0 = none, the arms are compared on what their "
        "samples show (oracle, selector, fidelity) alone - the cheap first look at an aligner against the control",
    )
    scales: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    downstream_budget: DownstreamBudget = Field(
        default="steps", description="as the run option evaluation.downstream_budget"
    )
    downstream_real: int | None = Field(
        default=None, ge=1, description="as the run option evaluation.downstream_real"
    )
    evaluation_conditions: EvaluationConditions = Field(
        default="auto", description="as the run option evaluation.conditions"
    )
    evaluation_layouts: int | None = Field(
        default=None, ge=1, description="as the run option evaluation.layouts"
    )
    arms: list[ArmConfig] = Field(min_length=1)
    log_with: list[TrackerName] = Field(
        default_factory=list,
        description="experiment trackers for every (arm, seed) run, each under its run name (arm-seedN)",
    )
    strict_keys: bool = Field(default=False, description="as the run option strict_keys")

    _known_device = field_validator("device")(_check_device)

    @model_validator(mode="after")
    def _arms_consistent(self) -> StudyConfig:
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique; repeated: {', '.join(dupes)}")
        for arm in self.arms:
            unknown = [m for m in arm.mix or [] if m not in names or m == arm.name]
            if unknown:
                raise ValueError(f"arm '{arm.name}' mixes unknown arms: {', '.join(unknown)}")
            mixes = [
                m
                for m in arm.mix or []
                if next(a for a in self.arms if a.name == m).mix is not None
            ]
            if mixes:
                raise ValueError(
                    f"arm '{arm.name}' mixes other mixes ({', '.join(mixes)}); list their generator arms instead"
                )
        mixes = [a.name for a in self.arms if a.mix is not None]
        if mixes and self.downstream_seeds == 0:
            raise ValueError(
                f"mix arms ({', '.join(mixes)}) exist only as downstream training sets; "
                "they need downstream_seeds >= 1"
            )
        controls = [a.name for a in self.arms if a.control]
        if len(controls) > 1:
            raise ValueError(f"one control arm per study; marked: {', '.join(controls)}")
        if any(s <= 0 for s in self.scales):
            raise ValueError("scales must be positive multiples of the real train size")
        return self


# --------------------------------------------------------------------------- YAML with lines


def _line_index(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark.line + 1
            _line_index(value_node, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, path + (i,), out)


def read_yaml_text(path: Path, what: str, error: type[SaadiError]) -> str:
    """The text of a YAML file, or a one-line ``error`` for a missing file, a folder or a binary."""
    if path.is_dir():
        raise error(f"{what} {path} is a folder; give the path of a YAML file")
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text (a binary file?); give a YAML file") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _duplicate_key(node: yaml.Node | None) -> yaml.Node | None:
    """The first key node repeated within one mapping (YAML loaders silently keep the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                return key_node
            seen.add(key)
            found = _duplicate_key(value_node)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found is not None:
                return found
    return None


def compose_yaml(text: str, path: Path, error: type[SaadiError]) -> yaml.Node | None:
    """The YAML node tree of ``text``; a one-line ``error`` with ``file:line`` for a syntax error
    or a key given twice in one mapping."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise error(
            f"{where}: not valid YAML ({getattr(exc, 'problem', None) or str(exc).splitlines()[0]})"
        ) from None
    duplicate = _duplicate_key(node)
    if duplicate is not None:
        raise error(
            f"{path}:{duplicate.start_mark.line + 1}: key '{duplicate.value}' is given twice"
        )
    return node


class YamlDoc:
    """A parsed YAML mapping plus the line of every key, for error messages."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        text = read_yaml_text(self.path, "config file", ConfigError)
        node = compose_yaml(text, self.path, ConfigError)
        self.data = yaml.safe_load(text)
        if self.data is None:
            self.data = {}
        if not isinstance(self.data, dict):
            raise ConfigError(f"{self.path}: expected a mapping of settings at the top level")
        self.lines: dict[tuple[Any, ...], int] = {}
        if node is not None:
            _line_index(node, (), self.lines)

    def where(self, loc: tuple[Any, ...]) -> str:
        """``file:line`` of the deepest key of ``loc`` present in the file."""
        for cut in range(len(loc), 0, -1):
            line = self.lines.get(tuple(loc[:cut]))
            if line is not None:
                return f"{self.path}:{line}"
        return str(self.path)


def _format_error(err: dict[str, Any], doc: YamlDoc | None, prefix: tuple[Any, ...] = ()) -> str:
    loc = prefix + tuple(
        p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))
    )
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling)"
    where = f"{doc.where(loc)}: " if doc is not None else ""
    return f"{where}{dotted}: {msg}"


def _validate(model: type[BaseModel], data: dict[str, Any], doc: YamlDoc | None) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(_format_error(errors[0], doc) + more) from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` wins; nested mappings are merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_assignment(text: str) -> dict[str, Any]:
    """``"generator.options.steps=200"`` -> ``{"generator": {"options": {"steps": 200}}}``;
    the value is read as YAML so numbers, booleans and lists keep their type."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (dotted key), got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"--set {text}: the value is not valid YAML ({problem}); quote it or close its brackets"
        ) from None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value  # type: ignore[return-value]


_COMPONENT_FIELDS = ("dataset", "generator", "selector", "pairing", "aligner", "downstream")
#: components whose kind a run may fill in (task defaults; downstream = the selector's kind)
_KIND_FROM_RUN = ("dataset", "generator", "selector", "pairing", "downstream")
_DEFAULT_KINDS = {"aligner": "diffusion-dpo"}


def _expand_components(data: dict[str, Any]) -> dict[str, Any]:
    """Write bare-kind components (``generator: ssd``) as ``{kind: ssd}`` so that a later
    ``--set generator.options.x=…`` merges into them instead of replacing them."""
    return {
        k: ({"kind": v} if k in _COMPONENT_FIELDS and isinstance(v, str) else v)
        for k, v in data.items()
    }


def build_run_config(
    file: Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[RunConfig, YamlDoc | None]:
    """The run config from an optional YAML file with CLI overrides on top. Options given for a
    component whose kind is left at its default apply to that default kind."""
    doc = YamlDoc(file) if file is not None else None
    defaults = {k: {"kind": v} for k, v in _DEFAULT_KINDS.items()}
    data = deep_merge(
        deep_merge(defaults, _expand_components(doc.data if doc else {})),
        _expand_components(overrides or {}),
    )
    return _validate(RunConfig, data, doc), doc


def load_config_file(
    path: Path, overrides: dict[str, Any] | None = None
) -> tuple[RunConfig | StudyConfig, YamlDoc]:
    """Validate a YAML file as a study (it has ``arms``) or a run config, with CLI
    ``overrides`` merged on top (their errors read like the file's)."""
    doc = YamlDoc(path)
    model: type[BaseModel] = StudyConfig if "arms" in doc.data else RunConfig
    return _validate(model, deep_merge(doc.data, overrides or {}), doc), doc


def validate_components(
    config: RunConfig | StudyConfig, registry: Registry, doc: YamlDoc | None = None
) -> dict[str, BaseModel]:
    """Check every component's kind exists and its options validate for the config's profile.

    Returns the validated options per config path (``"generator"``, ``"arms.0.generator"``, …).
    """
    specs: dict[tuple[Any, ...], tuple[str, ComponentSpec]] = {}
    category_of = {"downstream": "selector"}
    for field_name in ("dataset", "generator", "selector", "pairing", "aligner", "downstream"):
        spec = getattr(config, field_name, None)
        if spec is not None:
            specs[(field_name,)] = (category_of.get(field_name, field_name), spec)
    for i, arm in enumerate(getattr(config, "arms", []) or []):
        for field_name in ("generator", "aligner"):
            spec = getattr(arm, field_name)
            if spec is not None:
                specs[("arms", i, field_name)] = (field_name, spec)

    validated: dict[str, BaseModel] = {}
    for loc, (category, spec) in specs.items():
        if spec.kind is None and len(loc) == 1 and loc[0] in _KIND_FROM_RUN:
            continue  # the run fills it in from the dataset's task, then validates again
        validated[".".join(map(str, loc))] = _validate_spec(
            category, spec, loc, registry, config.profile, doc
        )
    _check_tasks(specs, registry, doc)
    return validated


def _validate_spec(
    category: str,
    spec: ComponentSpec,
    loc: tuple[Any, ...],
    registry: Registry,
    profile: str,
    doc: YamlDoc | None,
    holders: tuple[tuple[str, str], ...] = (),
) -> BaseModel:
    """The validated options of ``spec`` at ``loc``, and of every component its options hold
    (:func:`nested_specs`), so a typo inside ``sequence``'s parts fails before the first stage,
    not when alignment starts. ``holders`` are the components around this one: a component that
    holds itself would never end."""
    from saadi_core.registry import OptionsError

    dotted = ".".join(map(str, loc))
    if spec.kind is None:
        where = f"{doc.where(loc)}: " if doc else ""
        raise ConfigError(f"{where}{dotted}.kind: required")
    if (category, spec.kind) in holders:
        where = f"{doc.where(loc)}: " if doc else ""
        raise ConfigError(f"{where}{dotted}: {category} '{spec.kind}' holds itself")
    try:
        entry = registry.get(category, spec.kind)
    except SaadiError as exc:  # unknown or conflicting kind: point at the line
        where = f"{doc.where(loc + ('kind',))}: " if doc else ""
        raise type(exc)(f"{where}{dotted}.kind: {exc}") from None
    try:
        options = entry.build_options(spec.options, profile)
    except OptionsError as exc:
        raise ConfigError(_format_error(exc.errors[0], doc, loc + ("options",))) from None
    inside = (*holders, (category, spec.kind))
    for path, held_category, held in nested_specs(options, category):
        _validate_spec(
            held_category, held, loc + ("options", *path), registry, profile, doc, inside
        )
    return options


#: ``Field(json_schema_extra={CATEGORY_KEY: "selector"})`` on an options field holding components
#: of another category than its owner's (an aligner holding a reward selector)
CATEGORY_KEY = "saadi_category"


def nested_specs(
    options: BaseModel, category: str
) -> list[tuple[tuple[Any, ...], str, ComponentSpec]]:
    """The components a component's options hold, with their field paths and categories:
    ``iterative``'s ``inner``, ``sequence``'s ``aligners``, an ensemble selector's ``members``.
    A field's components are of the owner's ``category`` unless the field names another
    (:data:`CATEGORY_KEY`). Followed so the config check and the stage keys
    (:func:`nested_kinds`) reach third-party plugins; fields holding one spec or a list of them."""
    found: list[tuple[tuple[Any, ...], str, ComponentSpec]] = []
    for name, field in type(options).model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        held_category = str(extra.get(CATEGORY_KEY, category))
        value = getattr(options, name)
        if isinstance(value, ComponentSpec):
            found.append(((name,), held_category, value))
        elif isinstance(value, list | tuple):
            found.extend(
                ((name, i), held_category, v)
                for i, v in enumerate(value)
                if isinstance(v, ComponentSpec)
            )
    return found


def nested_kinds(
    category: str, options: BaseModel, registry: Registry, profile: str
) -> list[tuple[str, str]]:
    """``(category, kind)`` of every component held in ``options``, at any depth: their plugins
    compute the owner's stage too, so their versions belong in its key. For options already
    checked by :func:`validate_components` (no missing kind, no cycle)."""
    kinds: list[tuple[str, str]] = []
    for _, held_category, spec in nested_specs(options, category):
        assert spec.kind is not None  # validate_components requires it
        kinds.append((held_category, spec.kind))
        inner = registry.get(held_category, spec.kind).build_options(spec.options, profile)
        kinds.extend(nested_kinds(held_category, inner, registry, profile))
    return kinds


def _check_tasks(
    specs: dict[tuple[Any, ...], tuple[str, ComponentSpec]], registry: Registry, doc: YamlDoc | None
) -> None:
    """Components registered for different dataset tasks (``--generator ssi --selector resnet18``,
    or a classification selector on ``toy-seg``) fail here, not after the generator trained. The
    task is the dataset kind's, else the first component's that declares one (as a run picks its
    default dataset)."""
    tasks = {
        loc: registry.get(cat, spec.kind).task
        for loc, (cat, spec) in specs.items()
        if spec.kind is not None
    }
    dataset_task = tasks.get(("dataset",))
    first = next(((loc, t) for loc, t in tasks.items() if t is not None), None)
    if first is None:
        return
    ref_loc, task = (("dataset",), dataset_task) if dataset_task else first
    for loc, needs in tasks.items():
        if needs is not None and needs != task:
            kind = specs[loc][1].kind
            verb = "is" if ref_loc == ("dataset",) else "needs"
            ref = f"{'.'.join(map(str, ref_loc))} '{specs[ref_loc][1].kind}' {verb} {task}"
            where = f"{doc.where(loc + ('kind',))}: " if doc else ""
            raise ConfigError(
                f"{where}{'.'.join(map(str, loc))} '{kind}' needs a {needs} dataset, but {ref}"
            )
