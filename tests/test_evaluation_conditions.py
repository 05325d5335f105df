"""Evaluation on unseen layouts (``evaluation.conditions``): toy-seg draws layouts that share no
scene with train or test and leave both byte-identical; ``auto`` picks them when a dataset has
them; a mask-conditioned generator builds its evaluation conditions from them (its pool keeps the
training masks); generators whose conditions are not layouts keep theirs; asking for layouts a
dataset lacks stops the run before any training with one line naming the dataset."""

from __future__ import annotations

import numpy as np
import pytest

from saadi_core.data.dataset import Dataset
from saadi_core.data.fingerprint import dataset_fingerprint
from saadi_core.data.toy_cls import make_toy_cls
from saadi_core.data.toy_seg_v3 import make_toy_seg_v3
from saadi_core.errors import ConfigError
from saadi_core.evaluation.conditions import TRAINING, UNSEEN, evaluation_conditions, resolve
from saadi_core.interfaces import Condition


@pytest.fixture(scope="module")
def seg() -> Dataset:
    return make_toy_seg_v3(seed=4, n_train=24, n_test=6, n_layouts=12)


def test_layouts_are_new_scenes_and_leave_train_and_test_unchanged(seg: Dataset) -> None:
    plain = make_toy_seg_v3(seed=4, n_train=24, n_test=6)
    assert plain.layouts is None and seg.layouts is not None and len(seg.layouts) == 12
    for name in ("train", "test"):
        assert np.array_equal(getattr(seg, name).images, getattr(plain, name).images)
        assert np.array_equal(getattr(seg, name).masks, getattr(plain, name).masks)
    assert all(i.startswith("toy-seg/layouts/") for i in seg.layouts.ids)
    seen = {m.tobytes() for m in np.concatenate([seg.train.masks, seg.test.masks])}
    assert not any(m.tobytes() in seen for m in seg.layouts.masks)
    again = make_toy_seg_v3(seed=4, n_train=24, n_test=6, n_layouts=12)
    assert np.array_equal(again.layouts.images, seg.layouts.images)
    # the layouts are part of what a run's data stage is keyed by
    assert dataset_fingerprint(seg) != dataset_fingerprint(plain)


def test_auto_picks_unseen_layouts_only_where_a_dataset_has_them(seg: Dataset) -> None:
    cls = make_toy_cls(seed=0, n_train=10, n_test=5)
    assert resolve("auto", seg) == UNSEEN and resolve("training", seg) == TRAINING
    assert resolve("auto", cls) == TRAINING
    with pytest.raises(ConfigError, match="dataset 'toy-cls' .* has no unseen layouts"):
        resolve("unseen-layouts", cls)


def test_the_toy_seg_builder_draws_layouts_by_default() -> None:
    from saadi_ssi.options import SSIOptions

    from saadi_core.data.options import ToySegOptions
    from saadi_core.data.toy_seg import build

    data = build(ToySegOptions(n_train=8, n_test=4, n_layouts=5))
    assert data.layouts is not None and len(data.layouts) == 5
    # ssi's default conditions to evaluate on, and as many others to validate on
    assert ToySegOptions().n_layouts >= 2 * SSIOptions().n_conditions


def test_a_mask_conditioned_generator_evaluates_on_layouts_it_never_trained_on(
    seg: Dataset,
) -> None:
    from saadi_ssi.generator import SSIGenerator
    from saadi_ssi.options import SSIOptions

    generator = SSIGenerator(SSIOptions(n_conditions=4), None)
    pool = generator.conditions(seg)
    held_out, kind = evaluation_conditions(generator, seg, UNSEEN)
    assert kind == UNSEEN and len(held_out) == len(pool) == 4
    assert all(c.id.startswith("mask:toy-seg/train/") for c in pool)
    assert all(c.id.startswith("mask:toy-seg/layouts/") for c in held_out)
    index = seg.layouts.ids.index(held_out[0].meta["source"])
    assert np.array_equal(held_out[0].mask.numpy(), seg.layouts.masks[index])
    training, kind = evaluation_conditions(generator, seg, TRAINING)
    assert kind == TRAINING and [c.id for c in training] == [c.id for c in pool]


class _PromptGenerator:
    """Conditions without masks (class prompts, presence patterns): nothing to copy."""

    def conditions(self, dataset: Dataset) -> list[Condition]:
        return [Condition(id=f"class:{n}", class_name=n) for n in dataset.class_names]


def test_generators_whose_conditions_are_not_layouts_keep_them(seg: Dataset) -> None:
    conditions, kind = evaluation_conditions(_PromptGenerator(), seg, UNSEEN)
    assert kind == TRAINING and [c.id for c in conditions][:1] == ["class:background"]


def test_asking_for_layouts_a_dataset_lacks_stops_the_run_before_any_stage(tmp_path) -> None:
    from test_pipeline import FakePlugin, config

    from saadi_core.pipeline import run_pipeline
    from saadi_core.registry import Registry

    registry = Registry()
    registry.add_plugin(FakePlugin(), name="fake")
    cfg = config(tmp_path, evaluation={"n_per_condition": 40, "conditions": "unseen-layouts"})
    with pytest.raises(ConfigError, match="has no unseen layouts"):
        run_pipeline(cfg, registry, quiet=True)
    assert not list(tmp_path.glob("r/stages/*"))


def test_the_end_of_run_table_says_the_samples_are_of_unseen_layouts() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from saadi_core.summary import print_summary

    rates = {
        "base_rate": 0.6,
        "aligned_rate": 0.7,
        "difference_points": 10.0,
        "fail_to_pass": 12,
        "pass_to_fail": 2,
        "p_value": 0.01,
        "verdict": "better",
    }
    for conditions, expected in (("unseen-layouts", True), ("training", False)):
        summary = {
            "selector_pass": rates,
            "evaluation_conditions": conditions,
            "run": "r",
        }
        console = Console(record=True, width=200)
        print_summary(SimpleNamespace(summary=summary, session=None), console)
        text = console.export_text()
        assert ("same seeds of unseen layouts" in text) is expected, text


def test_the_report_says_the_samples_are_of_unseen_layouts() -> None:
    from saadi_core.report.run_sections import pass_rates
    from saadi_core.stages.names import EVALUATE, sample_stage

    class _Run:
        def __init__(self, conditions: str) -> None:
            self.outputs = {
                EVALUATE: {"base": {"selector_rate": 0.5, "n": 10}},
                sample_stage("base"): {"conditions": conditions},
            }

        def stage_json(self, stage: str, filename: str) -> dict:
            return {"outputs": self.outputs[stage]}

    assert "unseen layouts" in pass_rates(_Run(UNSEEN))
    assert "unseen layouts" not in pass_rates(_Run(TRAINING))


def test_aligners_validate_on_the_layouts_the_evaluation_does_not_use(seg: Dataset) -> None:
    from saadi_ssi.generator import SSIGenerator
    from saadi_ssi.options import SSIOptions

    from saadi_core.evaluation.conditions import validation_conditions

    generator = SSIGenerator(SSIOptions(n_conditions=4), None)
    evaluation, _ = evaluation_conditions(generator, seg, UNSEEN)
    validation, kind = validation_conditions(generator, seg, UNSEEN)
    # every layout the evaluation leaves (8 of 12), not the generator's pick of 4 of them
    assert kind == UNSEEN and len(validation) == 8
    assert all(c.id.startswith("mask:toy-seg/layouts/") for c in validation)
    assert not {c.id for c in validation} & {c.id for c in evaluation}
    assert {c.id for c in validation} | {c.id for c in evaluation} == {
        f"mask:{i}" for i in seg.layouts.ids
    }

    class _OwnMasks(SSIGenerator):
        """Mask-conditioned, but draws its own masks (as casdm draws layouts)."""

        calls = 0

        def conditions(self, dataset: Dataset) -> list[Condition]:
            self.calls += 1
            return [
                Condition(id=f"drawn:{c.id}", mask=1 - c.mask, control=c.control)
                for c in super().conditions(dataset)
            ]

    # none of its masks is a layout's: asked once for validation, not again and again
    drawn = _OwnMasks(SSIOptions(n_conditions=4), None)
    own, kind = validation_conditions(drawn, seg, UNSEEN)
    assert kind == UNSEEN and len(own) == 4 and drawn.calls == 2  # the evaluation's, then once
    # every layout used by the evaluation: nothing unseen is left, so the training masks
    every = SSIGenerator(SSIOptions(n_conditions=12), None)
    fallback, kind = validation_conditions(every, seg, UNSEEN)
    assert kind == TRAINING and all(c.id.startswith("mask:toy-seg/train/") for c in fallback)
    assert validation_conditions(generator, seg, TRAINING)[1] == TRAINING


def test_a_runs_validator_and_align_key_follow_the_evaluation(tmp_path) -> None:
    import torch
    from saadi_ssi.generator import SSIGenerator
    from saadi_ssi.options import SSIOptions

    from saadi_core.config import RunConfig
    from saadi_core.interfaces import Sample
    from saadi_core.registry import get_registry
    from saadi_core.session import RunSession
    from saadi_core.stages import align

    class _Drawn(SSIGenerator):
        """SSI's conditions, flat grey samples: the validator's wiring, not the model."""

        built = 0

        def conditions(self, dataset):
            _Drawn.built += 1
            return super().conditions(dataset)

        def sample(self, conditions, n_per_condition, seed):
            return [
                Sample(torch.zeros(3, 64, 64), c, "ssi", seed, i, mask=c.mask)
                for c in conditions
                for i in range(n_per_condition)
            ]

    class _Half:
        def score(self, samples):
            return [0.5] * len(samples)

    def session(conditions: str) -> RunSession:
        config = RunConfig(
            runs_dir=tmp_path / conditions,
            dataset={"kind": "toy-seg", "options": {"n_train": 24, "n_test": 6, "n_layouts": 12}},
            generator={"kind": "ssi"},
            selector={"kind": "segformer"},
            evaluation={"conditions": conditions},
        )
        return RunSession(config, get_registry(), True, None)

    keys = {}
    for conditions, prefix in (("auto", "toy-seg/layouts/"), ("training", "toy-seg/train/")):
        run = session(conditions)
        try:
            validate, drawn = align.validator(run, _Half()), _Drawn(SSIOptions(n_conditions=4))
            metrics = validate(drawn, size=8)
            assert metrics["groups"] and all(
                g.startswith(f"mask:{prefix}") for g in metrics["groups"]
            )
            # later validations sample the same conditions without building them again
            built = _Drawn.built
            assert validate(drawn, size=8)["groups"] == metrics["groups"] and _Drawn.built == built
            assert metrics["sampled_conditions"] is (conditions == "auto")
            keys[conditions] = align.params(run)
        finally:
            run.store.release()
    assert keys["auto"]["validation_conditions"] == UNSEEN
    assert keys["auto"]["validation_layouts"] == "every-unused"
    assert "validation_conditions" not in keys["training"]


def test_a_studys_evaluation_conditions_reach_every_run(tmp_path) -> None:
    from test_pipeline import FakePlugin
    from test_study import study_config

    from saadi_core.registry import Registry
    from saadi_core.study import arm_run_config

    registry = Registry()
    registry.add_plugin(FakePlugin(), name="fake")
    for value in ("auto", "training", "unseen-layouts"):
        study = study_config(tmp_path, evaluation_conditions=value)
        for arm in study.arms[:2]:
            assert arm_run_config(study, arm, 0, registry).evaluation.conditions == value
    assert study_config(tmp_path).evaluation_conditions == "auto"


def test_evaluation_on_n_layouts_covers_the_first_n_and_validation_the_rest(seg: Dataset) -> None:
    """``evaluation.layouts``: one condition on each of the first N layouts, even when the
    generator's own pick is smaller (ssi with n_conditions 4 is asked until it covers all 9);
    the validation keeps the other layouts, none shared."""
    from saadi_ssi.generator import SSIGenerator
    from saadi_ssi.options import SSIOptions

    from saadi_core.evaluation.conditions import validation_conditions

    generator = SSIGenerator(SSIOptions(n_conditions=4), None)
    evaluation, kind = evaluation_conditions(generator, seg, UNSEEN, layouts=9)
    assert kind == UNSEEN
    assert sorted(c.id for c in evaluation) == sorted(f"mask:{i}" for i in seg.layouts.ids[:9])
    validation, kind = validation_conditions(generator, seg, UNSEEN, layouts=9)
    assert kind == UNSEEN
    assert sorted(c.id for c in validation) == sorted(f"mask:{i}" for i in seg.layouts.ids[9:])
    # training conditions: the option does not apply
    assert evaluation_conditions(generator, seg, TRAINING, layouts=9)[1] == TRAINING


def test_evaluation_layouts_reach_the_keys_and_too_many_stop_the_run(tmp_path) -> None:
    from saadi_core.config import EvaluationConfig
    from saadi_core.evaluation.conditions import evaluation_layouts

    data = make_toy_seg_v3(seed=4, n_train=24, n_test=6, n_layouts=12)
    assert evaluation_layouts(EvaluationConfig(layouts=12), data) == 12
    assert evaluation_layouts(EvaluationConfig(layouts=12, conditions="training"), data) is None
    assert evaluation_layouts(EvaluationConfig(), data) is None
    with pytest.raises(ConfigError, match="evaluation.layouts is 13, but dataset 'toy-seg'.*12"):
        evaluation_layouts(EvaluationConfig(layouts=13), data)

    from saadi_core.config import RunConfig
    from saadi_core.registry import get_registry
    from saadi_core.session import RunSession
    from saadi_core.stages import align, sample

    def keys(layouts: int | None) -> tuple[dict, dict]:
        config = RunConfig(
            runs_dir=tmp_path / str(layouts),
            dataset={"kind": "toy-seg", "options": {"n_train": 24, "n_test": 6, "n_layouts": 12}},
            generator={"kind": "ssi"},
            selector={"kind": "segformer"},
            evaluation={"layouts": layouts},
        )
        run = RunSession(config, get_registry(), True, None)
        try:
            return sample.params(run), align.params(run)
        finally:
            run.store.release()

    (sample_default, align_default), (sample_n, align_n) = keys(None), keys(10)
    assert "layouts" not in sample_default and "evaluation_layouts" not in align_default
    assert sample_n == sample_default | {"layouts": 10}
    assert align_n == align_default | {"evaluation_layouts": 10}
