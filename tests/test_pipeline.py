"""The pipeline wiring, with small in-process plugins: stages, caching, invalidation, summary,
significance and the clear stop when no preference pair exists.

The fake components are deliberately simple but honest: the generator draws a class's colour with
a per-sample error, the selector scores how close the colour is, and the aligner lowers the error
— so a working pipeline must show a significant improvement, and a broken wiring would not.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict

from saadi_core import hookimpl
from saadi_core.config import build_run_config
from saadi_core.data.dataset import Dataset, Split
from saadi_core.errors import PipelineError
from saadi_core.interfaces import (
    Aligner,
    AlignResult,
    Condition,
    Generator,
    Pair,
    PairingStrategy,
    PairSet,
    Sample,
    Selector,
)
from saadi_core.pipeline import run_pipeline
from saadi_core.registry import Registry
from saadi_core.stages.downstream import equal_step_epochs

COLOURS = torch.tensor([[0.8, -0.8, -0.8], [-0.8, 0.8, -0.8]])
CALLS: list[str] = []


class Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    strength: float = 0.8
    threshold: float = 0.5


class SelectorOpts(Opts):
    epochs: int = 6


class ColourOracle:
    def check(self, images, labels=None, masks=None):
        mean = images.reshape(len(images), -1, 3).mean(axis=1) / 127.5 - 1.0
        target = COLOURS.numpy()[labels]
        return np.abs(mean - target).max(axis=1) < 0.5


def build_dataset(options) -> Dataset:
    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 2, n)
        images = (
            ((COLOURS.numpy()[labels][:, None, None, :] + 1) * 127.5)
            .repeat(8, 1)
            .repeat(8, 2)
            .astype(np.uint8)
        )
        return Split(
            images=images, ids=[f"toy/{i}" for i in range(n)], labels=labels.astype(np.int64)
        )

    return Dataset(
        "fake",
        "classification",
        ["red", "green"],
        split(20),
        split(10),
        oracle=ColourOracle(),
        source="fake",
    )


class ShiftGenerator(Generator):
    """Colour of the class plus an error; ``shrink`` (set by alignment) scales the error down."""

    shrink = 1.0

    def fit(self, dataset):
        CALLS.append("fit")

    def conditions(self, dataset):
        return [
            Condition(id=f"class:{n}", class_id=i, class_name=n)
            for i, n in enumerate(dataset.class_names)
        ]

    def sample(self, conditions, n_per_condition, seed):
        out = []
        for c in conditions:
            for i in range(n_per_condition):
                g = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{c.id}/{i}".encode()))
                error = (torch.rand(3, generator=g) * 2 - 1) * 1.6 * self.shrink
                image = (
                    (COLOURS[c.class_id] + error)
                    .clamp(-1, 1)[:, None, None]
                    .expand(3, 8, 8)
                    .clone()
                )
                out.append(Sample(image=image, condition=c, generator="shift", seed=seed, index=i))
        return out

    def save(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        (path / "g.json").write_text(json.dumps({"shrink": self.shrink}))

    def load(self, path: Path):
        self.shrink = json.loads((path / "g.json").read_text())["shrink"]


class ColourSelector(Selector):
    def fit(self, dataset, extra=()):
        CALLS.append(f"fit-selector:{len(extra)}")
        CALLS.append(f"epochs:{len(extra)}:{self.options.epochs}")
        CALLS.append(f"real:{len(dataset.train)}:{np.bincount(dataset.train.labels).tolist()}")

    def predict(self, images):
        mean = images.mean(dim=(2, 3))
        return torch.cdist(mean, COLOURS).argmin(dim=1)

    def score(self, samples):
        return [
            float(
                torch.exp(
                    -((s.image.mean(dim=(1, 2)) - COLOURS[s.condition.class_id]) ** 2).sum() * 2
                )
            )
            for s in samples
        ]

    def save(self, path):
        path.mkdir(parents=True, exist_ok=True)

    def load(self, path):
        pass


class SimpleThreshold(PairingStrategy):
    def pairs(self, samples, scores, seed):
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            groups.setdefault(s.condition.id, []).append(i)
        pairs = []
        h = self.options.threshold
        for idx in groups.values():
            winners = [i for i in idx if scores[i] >= h]
            losers = [i for i in idx if scores[i] < h]
            pairs += [
                Pair(samples[w], samples[l], scores[w], scores[l]) for w, l in zip(winners, losers)
            ]
        return PairSet(
            pairs,
            {
                "n_pairs": len(pairs),
                "conditions_without_winner": [],
                "conditions_without_loser": [],
            },
        )


class ShrinkAligner(Aligner):
    def align(self, generator, inputs, work_dir):
        CALLS.append("align")
        assert inputs.validate is not None
        before = inputs.validate(generator)
        generator.shrink = 1.0 - self.options.strength
        after = inputs.validate(generator)
        return AlignResult(
            generator, [{"step": 0, "implicit_accuracy": 0.9, **before}, {"step": 1, **after}]
        )

    def save(self, result, path):
        path.mkdir(parents=True, exist_ok=True)
        (path / "a.json").write_text(json.dumps({"shrink": result.generator.shrink}))

    def restore(self, generator, path):
        generator.shrink = json.loads((path / "a.json").read_text())["shrink"]
        return generator


class FakePlugin:
    @hookimpl
    def saadi_register_datasets(self, register):
        register("fake-data", build_dataset, options=Opts)

    @hookimpl
    def saadi_register_generators(self, register):
        register("shift", ShiftGenerator, options=Opts)

    @hookimpl
    def saadi_register_selectors(self, register):
        register("colour", ColourSelector, options=SelectorOpts)

    @hookimpl
    def saadi_register_pairings(self, register):
        register("simple", SimpleThreshold, options=Opts)

    @hookimpl
    def saadi_register_aligners(self, register):
        register("shrink", ShrinkAligner, options=Opts)


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.add_plugin(FakePlugin(), name="fake")
    return reg


def config(tmp_path, **extra):
    base = {
        "name": "r",
        "runs_dir": str(tmp_path),
        "device": "cpu",
        "dataset": "fake-data",
        "generator": "shift",
        "selector": "colour",
        "pairing": "simple",
        "aligner": "shrink",
        "pool": {"n_per_condition": 16},
        "evaluation": {"n_per_condition": 40},
    }
    return build_run_config(None, {**base, **extra})[0]


def test_full_loop_summary_and_significance(tmp_path, registry):
    CALLS.clear()
    result = run_pipeline(config(tmp_path), registry, quiet=True)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    for key in (
        "selector_pass",
        "oracle_pass",
        "dpo_implicit_accuracy",
        "downstream",
        "timings_s",
        "pairs",
        "score_diagnostics",
    ):
        assert summary[key] is not None, key
    oracle = summary["oracle_pass"]
    assert oracle["n"] == 80  # 40 per condition × 2, same seeds for base and aligned
    assert (
        oracle["aligned_rate"] > oracle["base_rate"]
        and oracle["p_value"] < 0.05
        and oracle["verdict"] == "improved"
    )
    assert summary["selector_pass"]["fail_to_pass"] > summary["selector_pass"]["pass_to_fail"]
    assert set(summary["downstream"]) >= {"metric", "real", "real+base@1x", "real+aligned@1x"}
    assert summary["downstream"]["metric"] == "macro_f1"
    assert set(summary["timings_s"]) == {
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
    # the fake selector exposes no features and no Inception weights are given: a note, no numbers
    fidelity = json.loads((tmp_path / "r" / "fidelity.json").read_text())
    assert fidelity["variants"] == {} and "does not expose image features" in fidelity["notes"][0]
    # the downstream model saw 1x real-size synthetic (20) for the synthetic variants; its real-only
    # training (same kind, options and seed as the selector) is the selector's, not trained again
    assert sorted(c for c in CALLS if c.startswith("fit-selector")) == [
        "fit-selector:0",
        "fit-selector:20",
        "fit-selector:20",
    ]
    assert summary["downstream"]["real"]["mean"] == summary["selector_test"]["macro_f1"]
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["seeds"] == {"run": 0, "pool": 1000, "evaluation": 2000}
    assert manifest["versions"]["plugins"]["fake"]["status"] == "loaded"
    # what computed the figures besides torch: a new environment can train other weights
    import diffusers

    assert manifest["versions"]["libraries"]["diffusers"] == diffusers.__version__


def test_rerun_is_cached_and_option_change_recomputes_downstream_only(tmp_path, registry):
    run_pipeline(config(tmp_path), registry, quiet=True)
    CALLS.clear()
    run_pipeline(config(tmp_path), registry, quiet=True)
    assert CALLS == []  # nothing recomputed
    result = run_pipeline(
        config(tmp_path, aligner={"kind": "shrink", "options": {"strength": 0.5}}),
        registry,
        quiet=True,
    )
    assert "fit" not in CALLS and "align" in CALLS  # generator reused, alignment redone
    stages = result.store.manifest["stages"]
    assert stages["train-generator"]["cached"] and stages["score"]["cached"]
    assert not stages["align"]["cached"] and not stages["evaluate"]["cached"]
    assert (
        stages["sample-base"]["cached"] and stages["downstream-base-1x-s0"]["cached"]
    )  # base side untouched
    assert (
        not stages["sample-aligned"]["cached"] and not stages["downstream-aligned-1x-s0"]["cached"]
    )


def test_no_pairs_stops_with_actionable_message(tmp_path, registry):
    cfg = config(tmp_path, pairing={"kind": "simple", "options": {"threshold": 2.0}})
    with pytest.raises(PipelineError, match=r"no preference pairs.*threshold h.*pool"):
        run_pipeline(cfg, registry, quiet=True)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["stages"]["align"]["status"] == "failed"
    assert not list((tmp_path / "r" / "stages").glob("align-*"))


def test_selector_blindness_is_diagnosed(tmp_path, registry, monkeypatch):
    monkeypatch.setattr(ColourSelector, "score", lambda self, samples: [0.9] * len(samples))
    with pytest.raises(
        PipelineError, match=r"near-constant scores \(std 0\.000\), so no preference pairs"
    ):
        run_pipeline(config(tmp_path), registry, quiet=True)
    score_dir = next((tmp_path / "r" / "stages").glob("score-*"))
    diag = json.loads((score_dir / "stage.json").read_text())["outputs"]
    assert any("near-constant" in w for w in diag["warnings"])
    assert "selector_oracle_agreement" in diag
    # every sample "passes" for the selector: agreement with the oracle is chance, kappa 0
    assert diag["selector_oracle_kappa"] == 0.0
    assert (
        diag["per_condition"]["class:red"]["losers"] == 0
        and diag["per_condition"]["class:red"]["n"] == 16
    )
    assert any("no winner or no loser" in w for w in diag["warnings"])


def test_downstream_differences_carry_a_paired_interval(tmp_path, registry):
    result = run_pipeline(
        config(tmp_path, evaluation={"n_per_condition": 40, "downstream_seeds": [0, 1, 2]}),
        registry,
        quiet=True,
    )
    versus = result.summary["downstream"]["real+aligned@1x"]["vs_real"]
    # the fake downstream model ignores its training data: identical per seed, no difference
    assert versus["difference"] == 0.0 and versus["ci95"] == [0.0, 0.0]
    assert versus["verdict"] == "no significant difference"


def test_profile_pool_size_is_spread_over_the_conditions(tmp_path, registry):
    """Without ``pool.n_per_condition`` the tiny profile's pool budget (640) is shared by the
    generator's conditions: 2 conditions → 320 each, and the pool holds exactly that."""
    from saadi_core.session import PROFILE_SIZES, per_condition

    assert (
        per_condition(640, 5) == 128 and per_condition(640, 16) == 40 and per_condition(10, 3) == 4
    )
    run_pipeline(config(tmp_path, pool={"seed": 1000}), registry, quiet=True)
    pool_dir = next((tmp_path / "r" / "stages").glob("generate-pool-*"))
    outputs = json.loads((pool_dir / "stage.json").read_text())["outputs"]
    assert outputs["n_conditions"] == 2
    assert outputs["n_per_condition"] == PROFILE_SIZES["tiny"]["pool_size"] // 2
    assert outputs["n_samples"] == PROFILE_SIZES["tiny"]["pool_size"]


def test_downstream_real_is_trained_when_it_differs_from_the_selector(tmp_path, registry):
    """Another downstream seed is another training: the real-only model is fitted, not copied."""
    CALLS.clear()
    run_pipeline(
        config(tmp_path, evaluation={"n_per_condition": 40, "downstream_seeds": [7]}),
        registry,
        quiet=True,
    )
    assert sorted(c for c in CALLS if c.startswith("fit-selector")) == [
        "fit-selector:0",
        "fit-selector:0",
        "fit-selector:20",
        "fit-selector:20",
    ]


def test_downstream_budget_is_equal_steps_by_default_or_equal_epochs(tmp_path, registry):
    """Real + 1x synthetic is twice the data: equal steps halve its epochs; equal epochs keep them.
    Real-only trains the same under both budgets, so its stage is reused."""
    CALLS.clear()
    run_pipeline(config(tmp_path), registry, quiet=True)
    assert sorted(c for c in CALLS if c.startswith("epochs")) == [
        "epochs:0:6",
        "epochs:20:3",
        "epochs:20:3",
    ]
    CALLS.clear()
    evaluation = {"n_per_condition": 40, "downstream_budget": "epochs"}
    run_pipeline(config(tmp_path, evaluation=evaluation), registry, quiet=True)
    assert sorted(c for c in CALLS if c.startswith("epochs")) == ["epochs:20:6", "epochs:20:6"]
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["stages"]["downstream-real-s0"]["cached"]


def test_downstream_models_can_see_fewer_real_images(tmp_path, registry):
    """downstream_real=6: every downstream model (real-only too, no longer the selector's copy)
    trains on the same class-balanced 6 real images, with 6 synthetic (1x of what it sees) at
    equal steps; the selector still sees all 20."""
    CALLS.clear()
    evaluation = {"n_per_condition": 40, "downstream_real": 6}
    run_pipeline(config(tmp_path, evaluation=evaluation), registry, quiet=True)
    fits = [c for c in CALLS if c.startswith("real:")]
    full = len(build_dataset(None).train)
    assert fits[0] == f"real:{full}:{np.bincount(build_dataset(None).train.labels).tolist()}"
    assert fits[1:] == ["real:6:[3, 3]"] * 3  # real-only, real + base, real + aligned
    assert sorted(c for c in CALLS if c.startswith("epochs"))[1:] == [
        "epochs:0:6",
        "epochs:6:3",
        "epochs:6:3",
    ]
    downstream = json.loads((tmp_path / "r" / "downstream.json").read_text())
    assert set(downstream["0"]) == {"real", "real+base@1x", "real+aligned@1x"}


@pytest.mark.parametrize(
    ("epochs", "n_real", "n_synthetic", "expected"),
    [(30, 500, 500, 15), (30, 500, 1000, 10), (30, 500, 0, 30), (1, 10, 1000, 1)],
)
def test_equal_step_epochs(epochs, n_real, n_synthetic, expected):
    assert equal_step_epochs(epochs, n_real, n_synthetic) == expected


def test_options_without_kind_apply_to_the_task_default(tmp_path, registry, monkeypatch):
    """``--set generator.options.x=…`` without ``--generator``: the options go to the task's
    default generator (and the downstream model inherits the selector's kind)."""
    from saadi_core import session

    monkeypatch.setitem(
        session.TASK_DEFAULTS,
        "classification",
        {"generator": "shift", "selector": "colour", "pairing": ("simple", {})},
    )
    cfg = config(
        tmp_path, generator={"options": {"strength": 0.5}}, selector={"options": {"threshold": 0.4}}
    )
    assert cfg.generator.kind is None and cfg.selector.kind is None
    result = run_pipeline(cfg, registry, quiet=True)
    assert result.summary["components"]["generator"] == "shift"
    assert result.summary["components"]["downstream"] == "colour"
    stage = json.loads(
        next((tmp_path / "r" / "stages").glob("train-generator-*/stage.json")).read_text()
    )
    assert stage["params"]["options"]["strength"] == 0.5


def test_kind_is_required_where_no_default_exists(tmp_path, registry):
    from saadi_core.config import validate_components
    from saadi_core.errors import ConfigError

    cfg = config(tmp_path, aligner={"options": {"strength": 0.5}})
    cfg = cfg.model_copy(update={"aligner": cfg.aligner.model_copy(update={"kind": None})})
    with pytest.raises(ConfigError, match=r"aligner\.kind: required"):
        validate_components(cfg, registry)


def test_adaptive_pool_tops_up_conditions_short_of_winners(tmp_path, registry, monkeypatch):
    """With ``pool.min_winners: k`` a condition is sampled again (fresh seeds) until it has k
    winners and k losers or reaches the cap; the saved pool holds every sample drawn."""
    from saadi_core.samples_io import load_samples

    # one sample in five wins, by its (seed, index): deterministic and independent of the images
    monkeypatch.setattr(
        ColourSelector,
        "score",
        lambda self, samples: [0.9 if (s.seed + s.index) % 5 == 0 else 0.1 for s in samples],
    )
    cfg = config(
        tmp_path,
        pool={"n_per_condition": 4, "min_winners": 2, "max_per_condition": 12},
        pairing={"kind": "simple", "options": {"threshold": 0.5}},
    )
    run_pipeline(cfg, registry, quiet=True)
    pool_dir = next((tmp_path / "r" / "stages").glob("generate-pool-*"))
    outputs = json.loads((pool_dir / "stage.json").read_text())["outputs"]
    adaptive = outputs["adaptive"]
    assert adaptive["added"] > 0 and outputs["n_samples"] == 2 * 4 + adaptive["added"]
    for cid, c in adaptive["per_condition"].items():
        assert (c["winners"] >= 2 and c["losers"] >= 2) or c["samples"] == 12, (cid, c)
        assert c["samples"] <= 12
    pool = load_samples(pool_dir)
    assert len(pool) == outputs["n_samples"]
    assert len({(s.condition.id, s.seed, s.index) for s in pool}) == len(
        pool
    )  # no sample drawn twice


def test_dataset_follows_the_task_the_generator_registered(tmp_path):
    """``saadi run --generator ssi`` without ``--dataset`` means the segmentation toy set."""
    from saadi_core.session import default_dataset

    reg = Registry.discover(only=["ssd", "ssi", "selectors"])
    cfg = build_run_config(None, {"generator": "ssi"})[0]
    assert cfg.dataset.kind is None and default_dataset(cfg, reg) == "toy-seg"
    assert default_dataset(build_run_config(None, {"selector": "segformer"})[0], reg) == "toy-seg"
    assert default_dataset(build_run_config(None, {"generator": "ssd"})[0], reg) == "toy-cls"
    assert default_dataset(build_run_config(None, {})[0], reg) == "toy-cls"


def test_pairing_defaults_follow_the_task(tmp_path, registry, monkeypatch):
    """Without a pairing kind the task's default applies, with the user's options on top."""
    from saadi_core import session

    monkeypatch.setitem(
        session.TASK_DEFAULTS,
        "classification",
        {"generator": "shift", "selector": "colour", "pairing": ("simple", {"threshold": 0.3})},
    )
    result = run_pipeline(
        config(tmp_path, pairing={"options": {"strength": 0.7}}), registry, quiet=True
    )
    assert result.summary["components"]["pairing"] == "simple"
    stage = json.loads(next((tmp_path / "r" / "stages").glob("pair-*/stage.json")).read_text())
    assert (
        stage["params"]["options"]["threshold"] == 0.3
        and stage["params"]["options"]["strength"] == 0.7
    )


def test_fidelity_metrics_of_base_and_aligned(tmp_path, registry, monkeypatch):
    """With the real metric plugins and selector features (the mean colour), the aligned samples
    — closer to the class colours — have the lower FID against the real training images."""
    import saadi_metrics.plugin

    registry.add_plugin(saadi_metrics.plugin, name="metrics")
    monkeypatch.setattr(
        ColourSelector,
        "features",
        lambda self, images: images.mean(dim=(2, 3)).double(),
        raising=False,
    )
    cfg = config(
        tmp_path,
        fidelity={
            "metrics": ["fid", "kid", "memorisation"],
            "options": {"kid": {"subset_size": 10}},
        },
    )
    result = run_pipeline(cfg, registry, quiet=True)
    fidelity = json.loads((tmp_path / "r" / "fidelity.json").read_text())
    assert "NOT Inception" in fidelity["feature_extractor"]["label"]
    assert fidelity["variants"]["aligned"]["fid"] < fidelity["variants"]["base"]["fid"]
    assert set(fidelity["memorisation"]) == {"base", "aligned"}
    assert result.summary["fidelity"]["aligned"]["fid"] == fidelity["variants"]["aligned"]["fid"]
    # the paired comparison measures the same sets: its whole-set FIDs are the variants' FIDs
    fid = fidelity["comparison"]["fid"]
    assert fid["base"] == pytest.approx(fidelity["variants"]["base"]["fid"]) and fid[
        "aligned"
    ] == pytest.approx(fidelity["variants"]["aligned"]["fid"])
    assert (
        fid["difference"] < 0
        and fid["n_groups"] == len(COLOURS)
        and fid["higher_is_better"] is False
    )
    assert (
        fidelity["comparison"]["kid_whole_set"]["n_items"]
        == result.summary["pass_rates"]["base"]["n"]
    )
    assert result.summary["fidelity"]["comparison"]["fid"]["verdict"] == fid["verdict"]


def test_class_presence_drop_is_warned():
    from saadi_core.evaluation.metrics import class_presence, presence_drops

    names = ["background", "organ", "artery"]
    with_artery, without = np.array([[0, 1], [2, 0]]), np.array([[0, 1], [1, 0]])
    base = class_presence([with_artery, with_artery, without, without], names)
    aligned = class_presence([without, without, without, with_artery], names)
    assert base == {"background": 1.0, "organ": 1.0, "artery": 0.5} and aligned["artery"] == 0.25
    warnings = presence_drops({"real": base, "base": base, "aligned": aligned})
    assert (
        len(warnings) == 1
        and "'artery' appears in 25% of aligned samples vs 50% of base" in warnings[0]
    )
    assert presence_drops({"base": base, "aligned": base}) == []


def test_iou_counts_sum_over_the_set_and_skip_classes_the_labels_never_show():
    from saadi_core.evaluation.metrics import iou_counts, mean_iou

    label_a = np.zeros((4, 4), dtype=np.int64)
    label_a[:, :2] = 1  # class 1 on the left half
    label_b = np.zeros((4, 4), dtype=np.int64)
    label_b[:2, :2] = 1
    prediction = np.zeros((4, 4), dtype=np.int64)
    prediction[:, :1] = 1  # class 1 on the left quarter; class 3 predicted but never labelled
    prediction[0, 3] = 3
    counts = np.stack([iou_counts(prediction, label, 4) for label in (label_a, label_b)])
    miou, per_class = mean_iou(counts)
    assert set(per_class) == {0, 1}
    assert per_class[1] == pytest.approx(
        (4 + 2) / (8 + 6)
    )  # summed over the set, not averaged per image
    assert per_class[0] == pytest.approx((7 + 9) / (12 + 14))  # background: 7/12 on a, 9/14 on b
    assert miou == pytest.approx((per_class[0] + per_class[1]) / 2)
    assert mean_iou(counts, exclude=[0]) == (pytest.approx(6 / 14), {1: pytest.approx(6 / 14)})
    assert mean_iou(iou_counts(label_a, label_a, 4))[0] == 1.0


def test_paired_bootstrap_calls_a_change_only_when_its_interval_excludes_zero():
    from saadi_core.evaluation.stats import MIN_CLUSTERS, paired_bootstrap

    rng = np.random.default_rng(0)
    many = np.repeat(np.arange(20), 5)  # 20 conditions x 5 samples: conditions are resampled
    base = rng.uniform(0.5, 0.7, size=many.size)

    def mean_of(values):
        return lambda rows: float(values[rows].mean())

    same = paired_bootstrap(many, mean_of(base), mean_of(base.copy()))
    assert (
        same["difference"] == 0
        and same["ci95"] == [0.0, 0.0]
        and same["verdict"] == "no significant difference"
    )
    assert (
        same["n_groups"] == 20
        and same["n_items"] == 100
        and "resampling the 20 conditions" in same["method"]
    )
    better = paired_bootstrap(
        many, mean_of(base), mean_of(base + 0.05 + rng.normal(0, 0.01, size=base.size))
    )
    assert better["ci95"][0] > 0 and better["verdict"].startswith("better than base")
    distance = paired_bootstrap(many, mean_of(base), mean_of(base + 0.05), higher_is_better=False)
    assert distance["verdict"] == "worse than base (95 % CI above 0)"  # a larger FID is worse
    # an effect that flips sign between conditions is no effect once conditions are resampled
    flips = base + np.where(many % 2 == 0, 0.05, -0.05)
    assert (
        paired_bootstrap(many, mean_of(base), mean_of(flips))["verdict"]
        == "no significant difference"
    )

    few = np.repeat(
        [0, 1], 50
    )  # 2 conditions: samples are resampled within each, not the 2 conditions
    assert len(np.unique(few)) < MIN_CLUSTERS
    small = paired_bootstrap(
        few, mean_of(base), mean_of(base + 0.02 + rng.normal(0, 0.01, size=base.size))
    )
    assert small["ci95"][0] > 0 and "within each of the 2 conditions" in small["method"]
    noisy = paired_bootstrap(few, mean_of(base), mean_of(base + rng.normal(0, 0.1, size=base.size)))
    assert noisy["ci95"][0] < noisy["difference"] < noisy["ci95"][1]
    one = paired_bootstrap(np.zeros(1, dtype=int), mean_of(base), mean_of(base))
    assert one["verdict"] == "not tested (fewer than 2 samples)"


class _MaskSegmenter(Selector):
    """Predicts class 1 where the red channel is positive: an image 'shows' its mask when the
    generator painted the mask's class-1 pixels red."""

    task = "segmentation"

    def fit(self, dataset, extra=()):  # pragma: no cover - not trained
        raise NotImplementedError

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return (images[:, 0] > 0).long()

    def score(self, samples):  # pragma: no cover - not used
        raise NotImplementedError

    def save(self, path):  # pragma: no cover
        raise NotImplementedError

    def load(self, path):  # pragma: no cover
        raise NotImplementedError


def test_label_preservation_per_variant_and_paired_over_conditions():
    """The evaluate stage's label preservation: the aligned variant paints its masks faithfully,
    the base one misses a column of every mask — the change is positive with an interval above 0."""
    from saadi_core.evaluation.samples import label_counts, label_preservation, paired_groups

    def samples(faithful: bool) -> list[Sample]:
        out = []
        for c in range(6):
            mask = torch.zeros(8, 8, dtype=torch.long)
            mask[: c + 2, : c + 2] = 1
            for i in range(3):
                painted = mask.clone()
                if not faithful:
                    painted[:, 0] = 0
                image = torch.where(painted.bool(), 1.0, -1.0).expand(3, 8, 8).clone()
                out.append(
                    Sample(
                        image=image,
                        condition=Condition(id=f"c{c}"),
                        generator="g",
                        seed=0,
                        index=i,
                        mask=mask,
                    )
                )
        return out

    loaded = {v: samples(v == "aligned") for v in ("base", "aligned")}
    counts = {
        v: label_counts(_MaskSegmenter(None), loaded[v], num_classes=2, batch_size=4)
        for v in loaded
    }
    groups = paired_groups(loaded["base"], loaded["aligned"])
    assert counts["base"].shape == (18, 3, 2) and list(groups[:4]) == [0, 0, 0, 1]
    assert paired_groups(loaded["base"], loaded["aligned"][::-1]) is None
    preserved = label_preservation(counts, ["background", "organ"], groups, seed=0)
    assert preserved["aligned"]["miou"] == 1.0 and preserved["aligned"]["per_class_iou"] == {
        "background": 1.0,
        "organ": 1.0,
    }
    assert preserved["base"]["miou_foreground"] < preserved["base"]["miou"] < 1.0
    change = preserved["change"]
    assert change["difference"] == pytest.approx(1.0 - preserved["base"]["miou"])
    assert (
        change["n_groups"] == 6
        and change["n_items"] == 18
        and change["ci95"][0] > 0
        and change["verdict"].startswith("better than base")
    )


def test_label_preservation_line_states_the_interval_and_verdict():
    from saadi_core.summary import label_preservation_line

    block = {"base": {"miou": 0.785}, "aligned": {"miou": 0.77}}
    assert (
        label_preservation_line(block)
        == "label preservation (selector mIoU vs the samples' masks): base 78.5%, aligned 77.0%"
    )
    block["change"] = {
        "difference": -0.014,
        "ci95": [-0.024, -0.005],
        "verdict": "worse than base (95 % CI below 0)",
    }
    assert label_preservation_line(block).endswith(
        "aligned − base -1.4 pts [-2.4, -0.5] (95 % paired bootstrap): worse than base (95 % CI below 0)"
    )


def _write_preferences(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("winner,loser\n" + "".join(f"{w},{l}\n" for w, l in rows))
    return path


def test_own_preferences_exported_rated_and_imported(tmp_path, registry):
    """Export the pool, rate it (here: prefer the selector's *worse* sample of each pair), align on
    the file: the pool and its scores are reused, the pairs are exactly the file's, and the summary
    says how often the selector would have agreed (never, by construction). Editing the file
    re-runs pairing and alignment."""
    import csv

    import saadi_pairing.plugin

    from saadi_core.preferences import export_pool

    registry.add_plugin(saadi_pairing.plugin, name="pairing")
    run_pipeline(config(tmp_path), registry, quiet=True)
    listing = export_pool(tmp_path / "r", tmp_path / "export")
    rows = list(csv.DictReader(listing.read_text().splitlines()))
    assert len(rows) == 32 and set(rows[0]) == {"file", "condition", "seed", "index", "score"}
    assert all((tmp_path / "export" / r["file"]).is_file() for r in rows)
    by_condition: dict[str, list[dict]] = {}
    for r in rows:
        by_condition.setdefault(r["condition"], []).append(r)
    rated = []
    for group in by_condition.values():
        ranked = sorted(group, key=lambda r: float(r["score"]))
        rated += [
            (ranked[0]["file"], ranked[-1]["file"]),
            (ranked[1]["file"].removesuffix(".png"), ranked[-2]["file"]),
        ]
    prefs = _write_preferences(
        tmp_path / "prefs.csv", rated + rated[:1]
    )  # a repeated row counts once

    CALLS.clear()
    result = run_pipeline(
        config(tmp_path, pairing={"kind": "preferences", "options": {"file": str(prefs)}}),
        registry,
        quiet=True,
    )
    stages = result.store.manifest["stages"]
    assert (
        stages["generate-pool"]["cached"]
        and stages["score"]["cached"]
        and not stages["pair"]["cached"]
    )
    assert "align" in CALLS
    pairs = json.loads((result.store.root / stages["pair"]["path"] / "pairs.json").read_text())
    names = [r["file"].removesuffix(".png") for r in rows]
    assert [[names[w], names[l]] for w, l in pairs["pairs"]] == [
        [w.removesuffix(".png"), l.removesuffix(".png")] for w, l in rated
    ]
    assert (
        result.summary["pairs"]["strategy"] == "preferences"
        and result.summary["pairs"]["selector_agreement"] == 0.0
    )

    _write_preferences(prefs, rated[:1])
    CALLS.clear()
    edited = run_pipeline(
        config(tmp_path, pairing={"kind": "preferences", "options": {"file": str(prefs)}}),
        registry,
        quiet=True,
    )
    assert not edited.store.manifest["stages"]["pair"]["cached"] and "align" in CALLS
    assert edited.summary["pairs"]["n_pairs"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("first,second\na,b\n", "needs a header with the columns 'winner' and 'loser'"),
        (
            "winner,loser\nnope.png,00001_class-0.png\n",
            "prefs.csv:2: winner 'nope.png' is not a sample of this run's pool",
        ),
        (
            "winner,loser\n00001_class-0,00001_class-0\n",
            "prefs.csv:2: a sample cannot be preferred to itself",
        ),
        (
            "winner,loser\n00000_class-0.png,00001_class-0.png\n00000_class-0.png,00002_class-1.png\n",
            "prefs.csv:3: winner and loser have different conditions",
        ),
    ],
)
def test_bad_preference_files_are_one_line_errors_naming_the_line(tmp_path, content, message):
    from saadi_core.errors import DataError
    from saadi_core.preferences import read_preferences, sample_file_name

    samples = [
        Sample(
            image=torch.zeros(3, 2, 2),
            condition=Condition(id=f"class:{k}"),
            generator="g",
            seed=0,
            index=i,
        )
        for i, k in enumerate([0, 0, 1])
    ]
    assert [sample_file_name(i, s) for i, s in enumerate(samples)] == [
        "00000_class-0",
        "00001_class-0",
        "00002_class-1",
    ]
    path = tmp_path / "prefs.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_preferences(path, samples)


def test_preference_options_need_an_existing_file_and_fingerprint_it(tmp_path):
    from pydantic import ValidationError
    from saadi_pairing.options import PreferenceOptions

    with pytest.raises(ValidationError, match="not found"):
        PreferenceOptions(file=tmp_path / "missing.csv")
    path = _write_preferences(tmp_path / "p.csv", [("a", "b")])
    first = PreferenceOptions(file=path).digest
    _write_preferences(path, [("a", "c")])
    assert first and PreferenceOptions(file=path).digest != first
