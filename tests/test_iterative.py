"""The ``iterative`` aligner: rounds of selector retraining, re-scoring of the ORIGINAL pool,
re-pairing and realignment around an inner aligner created through the registry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel, ConfigDict
from saadi_align.dpo import ADAPTER_NAME
from saadi_align.iterative import IterativeAligner
from saadi_align.options import IterativeOptions
from test_dpo import TinyDiffusion, base_weights, make_dataset, make_pairs, one_thread  # noqa: F401 (fixture)

from saadi_core import hookimpl
from saadi_core.diffusion.lora import has_lora, lora_state_dict
from saadi_core.errors import PipelineError
from saadi_core.interfaces import (
    Aligner,
    AlignInputs,
    AlignResult,
    Generator,
    Pair,
    PairingStrategy,
    PairSet,
    Sample,
    Selector,
)
from saadi_core.registry import get_registry

# --------------------------------------------------------------------------- fakes


class FakeSelector(Selector):
    """Scores by image brightness; after ``fit`` on extra samples it shifts its scores, so the
    re-scored pool differs from the original scores."""

    instances: list[FakeSelector] = []

    def __init__(self) -> None:
        super().__init__(None)
        self.fits: list[int] = []
        self.scored: list[Sequence[Sample]] = []
        self.shift = 0.0
        FakeSelector.instances.append(self)

    def fit(self, dataset, extra: Sequence[Sample] = ()) -> None:
        self.fits.append(len(extra))
        self.shift = 0.1 * len(FakeSelector.instances)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(images.shape[0], dtype=torch.long)

    def score(self, samples: Sequence[Sample]) -> list[float]:
        self.scored.append(samples)
        return [min(1.0, max(0.0, 0.5 + float(s.image.mean()) + self.shift)) for s in samples]

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> None:
        raise NotImplementedError


class FakePairing(PairingStrategy):
    """Best vs worst within each condition; records what it was asked to pair."""

    def __init__(self) -> None:
        super().__init__(None)
        self.calls: list[tuple[Sequence[Sample], list[float]]] = []

    def pairs(self, samples: Sequence[Sample], scores: Sequence[float], seed: int) -> PairSet:
        self.calls.append((samples, list(scores)))
        groups: dict[str, list[tuple[float, Sample]]] = {}
        for s, v in zip(samples, scores):
            groups.setdefault(s.condition.id, []).append((v, s))
        out = []
        for members in groups.values():
            members.sort(key=lambda m: m[0])
            (lo, loser), (hi, winner) = members[0], members[-1]
            out.append(Pair(winner=winner, loser=loser, winner_score=hi, loser_score=lo))
        return PairSet(
            pairs=out,
            stats={
                "n_pairs": len(out),
                "conditions_without_winner": [],
                "conditions_without_loser": [],
            },
        )


class RecordingInnerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tag: str = "x"


class RecordingInner(Aligner):
    """A third-party inner aligner: marks the generator and records every call."""

    calls: list[dict[str, Any]] = []
    restored: list[Path] = []

    def align(self, generator: Generator, inputs: AlignInputs, work_dir: Path) -> AlignResult:
        RecordingInner.calls.append(
            {"generator": generator, "pairs": inputs.pairs, "tag": self.options.tag}
        )
        generator.marks = [*getattr(generator, "marks", []), self.options.tag]
        return AlignResult(
            generator,
            [{"step": 1, "implicit_accuracy": 0.5}],
            {"aligned_equals_base": False, "tag": self.options.tag},
        )

    def save(self, result: AlignResult, path: Path) -> None:
        path.mkdir(parents=True)
        (path / "marks.txt").write_text(",".join(result.generator.marks))

    def restore(self, generator: Generator, path: Path) -> Generator:
        RecordingInner.restored.append(path)
        generator.marks = (path / "marks.txt").read_text().split(",")
        return generator


class TestPlugin:
    @hookimpl
    def saadi_register_aligners(self, register):
        register("recording-inner", RecordingInner, options=RecordingInnerOptions)


@pytest.fixture(scope="module", autouse=True)
def third_party_inner():
    registry = get_registry()
    if "recording-inner" not in registry.kinds("aligner"):
        registry.add_plugin(TestPlugin(), name="test-recording-inner")


@pytest.fixture(autouse=True)
def fresh_records():
    FakeSelector.instances.clear()
    RecordingInner.calls.clear()
    RecordingInner.restored.clear()


def make_inputs(pool_per_class: int = 4) -> AlignInputs:
    dataset = make_dataset()
    gen = TinyDiffusion(seed=5)
    pool = gen.sample(gen.conditions(dataset), pool_per_class, seed=1)
    original = FakeSelector()
    scores = original.score(pool)
    pairing = FakePairing()
    return AlignInputs(
        pairs=pairing.pairs(pool, scores, seed=0),
        dataset=dataset,
        pool=pool,
        scores=scores,
        selector=original,
        pairing=pairing,
        new_selector=FakeSelector,
        seed=3,
    )


def iterative(**options) -> IterativeAligner:
    return IterativeAligner(IterativeOptions(**options))


# --------------------------------------------------------------------------- tests


def test_rounds_retrain_the_selector_and_rescore_the_original_pool(tmp_path: Path) -> None:
    inputs = make_inputs()
    generator = TinyDiffusion()
    aligner = iterative(
        rounds=3, n_per_condition=2, inner={"kind": "recording-inner", "options": {"tag": "r"}}
    )
    result = aligner.align(generator, inputs, tmp_path)

    # one alignment per round; round 1 on the pipeline's pairs, later rounds on re-paired pools
    assert len(RecordingInner.calls) == 3
    assert RecordingInner.calls[0]["pairs"] is inputs.pairs
    new_selectors = FakeSelector.instances[1:]  # [0] is the run's original selector
    assert len(new_selectors) == 2
    assert all(s.fits == [3 * 2] for s in new_selectors)  # real + 3 conditions × 2 aligned samples
    assert all(len(s.scored) == 1 and s.scored[0] is inputs.pool for s in new_selectors)
    pair_calls = inputs.pairing.calls[1:]  # [0] formed the round-1 pairs in make_inputs
    assert len(pair_calls) == 2 and all(samples is inputs.pool for samples, _ in pair_calls)
    assert pair_calls[0][1] != list(inputs.scores)  # paired on the NEW selector's scores
    assert RecordingInner.calls[1]["pairs"] is not inputs.pairs

    # from base every round: earlier rounds align copies, the last one the given generator
    subjects = [c["generator"] for c in RecordingInner.calls]
    assert (
        subjects[0] is not generator and subjects[1] is not generator and subjects[2] is generator
    )
    assert generator.marks == ["r"] and result.generator is generator
    assert [h["round"] for h in result.history] == [1, 2, 3]
    assert [r["round"] for r in result.meta["rounds"]] == [1, 2, 3]
    assert (
        result.meta["rounds"][1]["n_aligned_samples"] == 6
        and result.meta["final_round"]["tag"] == "r"
    )

    aligner.save(result, tmp_path / "saved")
    restored = iterative(inner={"kind": "recording-inner", "options": {"tag": "r"}}).restore(
        TinyDiffusion(), tmp_path / "saved"
    )
    assert restored.marks == ["r"] and RecordingInner.restored == [tmp_path / "saved" / "final"]
    assert (tmp_path / "saved" / "history.json").is_file()


def test_continue_from_previous_realigns_the_same_generator(tmp_path: Path) -> None:
    generator = TinyDiffusion()
    aligner = iterative(
        rounds=2, n_per_condition=1, continue_from_previous=True, inner={"kind": "recording-inner"}
    )
    aligner.align(generator, make_inputs(), tmp_path)
    assert [c["generator"] for c in RecordingInner.calls] == [generator, generator]
    assert generator.marks == ["x", "x"]


def test_missing_inputs_and_empty_repairs_fail_clearly(tmp_path: Path) -> None:
    inputs = make_inputs()
    inputs.new_selector = None
    with pytest.raises(PipelineError, match="needs new_selector"):
        iterative(rounds=2, inner={"kind": "recording-inner"}).align(
            TinyDiffusion(), inputs, tmp_path
        )

    inputs = make_inputs()
    inputs.pairing.pairs = lambda samples, scores, seed: PairSet(pairs=[], stats={})  # type: ignore[method-assign]
    with pytest.raises(PipelineError, match="round 2.*no preference pairs"):
        iterative(rounds=2, n_per_condition=1, inner={"kind": "recording-inner"}).align(
            TinyDiffusion(), inputs, tmp_path
        )


def test_two_rounds_of_diffusion_dpo_from_base(tmp_path: Path) -> None:
    """The default inner aligner (diffusion-dpo, through the registry) on a real tiny network."""
    generator = TinyDiffusion()
    before = base_weights(generator.net)
    inputs = make_inputs()
    inputs.pairs = make_pairs(2)  # round 1 on learnable pairs; round 2 re-pairs the pool
    dpo = {"steps": 3, "batch_size": 2, "lr": 3e-3, "beta": 500.0}
    aligner = iterative(
        rounds=2, n_per_condition=1, inner={"kind": "diffusion-dpo", "options": dpo}
    )
    result = aligner.align(generator, inputs, tmp_path / "work")

    steps = [h for h in result.history if h.get("event") == "dpo_step"]
    assert [h["round"] for h in steps] == [1, 1, 1, 2, 2, 2]
    # round 2 starts from the base again: its first loss is ln 2
    assert abs(steps[3]["loss"] - math.log(2)) < 1e-6
    assert result.generator is generator and has_lora(generator.net, ADAPTER_NAME)
    assert all(torch.equal(before[k], v) for k, v in base_weights(generator.net).items())

    aligner.save(result, tmp_path / "saved")
    restored = iterative(inner={"kind": "diffusion-dpo"}).restore(
        TinyDiffusion(), tmp_path / "saved"
    )
    a, b = lora_state_dict(generator.net, ADAPTER_NAME), lora_state_dict(restored.net, ADAPTER_NAME)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_on_policy_rounds_draw_a_new_pool_from_the_current_generator(tmp_path: Path) -> None:
    inputs = make_inputs(pool_per_class=2)
    generator = TinyDiffusion()
    aligner = iterative(
        rounds=2, pool="on-policy", continue_from_previous=True, inner={"kind": "recording-inner"}
    )
    result = aligner.align(generator, inputs, tmp_path)

    assert (
        len(FakeSelector.instances) == 1
    )  # no selector is retrained: the run's one scores the new pool
    original = FakeSelector.instances[0]
    new_pool = original.scored[-1]
    assert new_pool is not inputs.pool and len(new_pool) == len(inputs.pool)
    assert {s.seed for s in new_pool} == {
        inputs.seed + 60_000 + 2
    }  # drawn by the round-1 generator
    assert inputs.pairing.calls[-1][0] is new_pool
    round2 = RecordingInner.calls[1]["pairs"]
    assert round2 is not inputs.pairs and all(p.winner in new_pool for p in round2)
    assert result.meta["pool"] == "on-policy" and result.meta["rounds"][1]["n_pool"] == len(
        new_pool
    )

    inputs = make_inputs()
    inputs.selector = None
    with pytest.raises(PipelineError, match="needs selector"):
        iterative(rounds=2, pool="on-policy", inner={"kind": "recording-inner"}).align(
            TinyDiffusion(), inputs, tmp_path
        )
