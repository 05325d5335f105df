"""``sft-winners``, ``diffusion-kto`` and the paired lower-confidence-bound checkpoint rule shared
by every LoRA aligner — on the tiny diffusion generator of ``test_dpo``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from saadi_align.kto import ADAPTER_NAME as KTO_ADAPTER
from saadi_align.kto import DiffusionKTO
from saadi_align.labelled import real_samples
from saadi_align.losses import diffusion_kto_loss
from saadi_align.options import DiffusionKTOOptions, SFTWinnersOptions, TrainLongerOptions
from saadi_align.sft import ADAPTER_NAME as SFT_ADAPTER
from saadi_align.sft import SFTWinners, TrainLonger
from saadi_align.training import (
    Selection,
    condition_means,
    lower_bound,
    per_sample_error,
    worst_condition_bound,
)
from test_dpo import TinyDiffusion, base_weights, make_dataset, make_pairs, one_thread  # noqa: F401 (fixture)

from saadi_core.conformance import check_aligner
from saadi_core.diffusion.lora import has_lora, lora_state_dict
from saadi_core.errors import PipelineError
from saadi_core.interfaces import AlignInputs, PairSet


def pool_inputs(n_per_class: int = 4) -> AlignInputs:
    """A pool of smooth winners (score 0.9) and noise losers (0.1) — the pairs of test_dpo, flat."""
    pairs = make_pairs(n_per_class)
    pool = [s for p in pairs for s in (p.winner, p.loser)]
    scores = [0.9 if i % 2 == 0 else 0.1 for i in range(len(pool))]
    return AlignInputs(pairs=pairs, dataset=make_dataset(), pool=pool, scores=scores, seed=0)


# --------------------------------------------------------------------------- the KTO loss


def test_kto_loss_matches_an_independent_formula() -> None:
    # 3 samples of 2 elements, target 0: errors are mean squares of the predictions
    target = torch.zeros(3, 2)
    model = torch.tensor([[0.1, 0.1], [0.3, 0.1], [0.2, 0.4]])
    ref = torch.tensor([[0.2, 0.2], [0.2, 0.2], [0.2, 0.2]])
    desirable = torch.tensor([True, False, True])
    beta, lam_d, lam_u = 20.0, 1.5, 0.5

    def err(row):
        return (row[0] ** 2 + row[1] ** 2) / 2

    g = [
        err(r) - err(m) for m, r in zip(model.tolist(), ref.tolist())
    ]  # reference error − model error
    z = max(0.0, sum(g) / 3)

    def sigmoid(x):
        return 1 / (1 + math.exp(-x))

    terms = []
    for gi, good in zip(g, desirable.tolist()):
        utility = sigmoid(beta * (gi - z)) if good else sigmoid(-beta * (gi - z))
        terms.append((lam_d if good else lam_u) * (1 - utility))
    expected = sum(terms) / 3
    out = diffusion_kto_loss(model, ref, target, desirable, beta, lam_d, lam_u)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.reference_point == pytest.approx(z, abs=1e-9)
    assert out.reward_desirable == pytest.approx(beta * (g[0] + g[2]) / 2, rel=1e-5)
    assert out.reward_undesirable == pytest.approx(beta * g[1], rel=1e-5)
    # the reference point is clipped at 0 when the model fits worse on average
    worse = diffusion_kto_loss(ref + 0.3, ref, target, desirable, beta)
    assert worse.reference_point == 0.0


def test_kto_loss_is_one_half_when_model_equals_reference_and_its_gradient_is_signed() -> None:
    target = torch.zeros(4, 3)
    ref = torch.rand(4, 3)
    model = ref.clone().requires_grad_(True)
    desirable = torch.tensor([True, True, False, False])
    out = diffusion_kto_loss(model, ref, target, desirable, beta=10.0)
    assert out.loss.item() == pytest.approx(0.5, abs=1e-7)
    out.loss.backward()
    # lowering the error of a desirable sample lowers the loss, of an undesirable one raises it
    assert (
        torch.sum(model.grad[0] * model[0].detach()) > 0
        and torch.sum(model.grad[2] * model[2].detach()) < 0
    )


# --------------------------------------------------------------------------- the aligners


def errors_against_base(gen: TinyDiffusion, samples: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean denoising error of ``gen`` and of an untouched base network on ``samples`` (each 4 times,
    fixed noise and timesteps)."""
    x0 = torch.stack([s.image for s in samples]).repeat(4, 1, 1, 1)
    cond = {"class_ids": torch.tensor([s.condition.class_id for s in samples]).repeat(4)}
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 50, (noise.shape[0],), generator=g)
    x_t = gen.noise_scheduler.add_noise(x0, noise, t)
    with torch.no_grad():
        aligned = per_sample_error(gen.predict(x_t, t, cond), noise).mean()
        base = per_sample_error(TinyDiffusion().predict(x_t, t, cond), noise).mean()
    return aligned, base


def test_sft_winners_trains_on_winners_only_and_keeps_the_base(tmp_path: Path) -> None:
    gen = TinyDiffusion()
    before = base_weights(gen.net)
    inputs = pool_inputs(2)
    aligner = SFTWinners(SFTWinnersOptions(steps=6, batch_size=4, lr=1e-2, seed=0))
    result = aligner.align(gen, inputs, tmp_path)
    assert (
        result.meta["n_winners"] == 6
        and result.meta["n_pool"] == 12
        and result.meta["threshold"] == 0.5
    )
    assert [h["step"] for h in result.history if h["event"] == "sft_step"] == list(range(1, 7))
    assert has_lora(gen.net, SFT_ADAPTER) and all(
        torch.equal(before[k], v) for k, v in base_weights(gen.net).items()
    )
    # the winners' denoising error fell relative to the base network
    aligned, base = errors_against_base(gen, [p.winner for p in inputs.pairs])
    assert aligned < base


def test_the_runs_h_labels_the_pool_when_the_aligner_sets_none() -> None:
    """A pairing without h (a preferences file) on segmentation: the run's h (the task's 0.9)
    labels the pool, not the paper's 0.5; the aligner's own option still wins."""
    from saadi_align.labelled import threshold_of

    inputs = pool_inputs(1)
    assert threshold_of(inputs, None) == 0.5
    inputs.threshold = 0.9
    assert threshold_of(inputs, None) == 0.9 and threshold_of(inputs, 0.7) == 0.7


def test_sft_mixes_real_images_under_the_generators_conditions(tmp_path: Path) -> None:
    gen, inputs = TinyDiffusion(), pool_inputs(1)
    real = real_samples(gen, inputs)
    assert [s.condition.class_id for s in real] == [0, 1, 2] and all(
        s.generator == "real" for s in real
    )
    result = SFTWinners(SFTWinnersOptions(steps=2, batch_size=4, real_fraction=0.5, seed=0)).align(
        gen, inputs, tmp_path
    )
    assert result.meta["n_real"] == 3 and result.meta["real_per_batch"] == 2


def test_train_longer_fine_tunes_on_the_real_images_alone(tmp_path: Path) -> None:
    """The control needs no winner (this pool has none), every row is a real image, and the
    real images' denoising error falls against the base network."""
    gen, inputs = TinyDiffusion(), pool_inputs(1)
    inputs.scores = [0.1] * len(inputs.pool)
    result = TrainLonger(TrainLongerOptions(steps=6, batch_size=3, lr=1e-2, seed=0)).align(
        gen, inputs, tmp_path
    )
    assert result.meta["n_winners"] == 0 and result.meta["n_encoded_samples"] == 3
    assert result.meta["real_per_batch"] == 3 and "threshold" not in result.meta
    aligned, base = errors_against_base(gen, real_samples(gen, inputs))
    assert aligned < base


def test_sft_winners_with_almost_only_real_rows_still_needs_a_winner(tmp_path: Path) -> None:
    """A real share that rounds to the whole batch trains on no winner, so none is demanded; one
    that leaves a winner row demands one (the two decisions used to disagree)."""
    inputs = pool_inputs(1)
    inputs.scores = [0.1] * len(inputs.pool)
    whole = SFTWinners(SFTWinnersOptions(steps=1, batch_size=4, real_fraction=0.9, seed=0))
    assert whole.align(TinyDiffusion(), inputs, tmp_path / "a").meta["n_winners"] == 0
    with pytest.raises(PipelineError, match="no sample scoring"):
        SFTWinners(SFTWinnersOptions(steps=1, batch_size=4, real_fraction=0.7)).align(
            TinyDiffusion(), inputs, tmp_path / "b"
        )
    with pytest.raises(ValueError, match="real_fraction"):
        SFTWinnersOptions(real_fraction=1.0)


def test_unpaired_aligners_refuse_a_pool_without_what_they_need(tmp_path: Path) -> None:
    inputs = pool_inputs(1)
    inputs.scores = [0.1] * len(inputs.pool)
    with pytest.raises(PipelineError, match="sft-winners.*no sample scoring ≥ h=0.5"):
        SFTWinners(SFTWinnersOptions(steps=1)).align(TinyDiffusion(), inputs, tmp_path)
    empty = AlignInputs(pairs=PairSet(pairs=[]), dataset=make_dataset())
    with pytest.raises(PipelineError, match="diffusion-kto.*no scored sample"):
        DiffusionKTO(DiffusionKTOOptions(steps=1)).align(TinyDiffusion(), empty, tmp_path)


def test_kto_learns_from_a_pool_with_only_losers(tmp_path: Path) -> None:
    """No pair can be formed, yet KTO moves the model away from the undesirable samples."""
    gen, inputs = TinyDiffusion(), pool_inputs(2)
    inputs.scores = [0.1] * len(inputs.pool)
    result = DiffusionKTO(
        DiffusionKTOOptions(steps=4, batch_size=4, lr=1e-2, beta=500.0, seed=0)
    ).align(gen, inputs, tmp_path)
    steps = [h for h in result.history if h["event"] == "kto_step"]
    assert result.meta["n_desirable"] == 0 and not result.meta["balanced"]
    assert steps[0]["loss"] == pytest.approx(0.5, abs=1e-6) and "reward_desirable" not in steps[0]
    assert any(
        v.abs().sum() > 0 for k, v in lora_state_dict(gen.net, KTO_ADAPTER).items() if "lora_B" in k
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: SFTWinners(SFTWinnersOptions(steps=3, batch_size=2, seed=0)),
        lambda: DiffusionKTO(DiffusionKTOOptions(steps=3, batch_size=4, beta=500.0, seed=0)),
        lambda: TrainLonger(TrainLongerOptions(steps=3, batch_size=2, seed=0)),
    ],
    ids=["sft-winners", "diffusion-kto", "train-longer"],
)
def test_unpaired_aligners_pass_the_conformance_check(make, tmp_path: Path) -> None:
    check_aligner(
        make(), TinyDiffusion(seed=3), make_dataset(), fit_generator=False, work_dir=tmp_path
    )


# --------------------------------------------------------------------------- paired selection


def test_lower_bound_of_paired_differences() -> None:
    assert lower_bound([0.0] * 10, 0.9) == 0.0
    diffs = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, -1.0, 1.0]
    mean = sum(diffs) / 8
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 7)
    assert lower_bound(diffs, 0.95) == pytest.approx(mean - 1.6448536 * sd / math.sqrt(8), rel=1e-6)


def _validation(values: list[int]) -> dict:
    return {
        "selector_pass": sum(values) / len(values),
        "per_sample": {"selector_pass": [float(v) for v in values]},
    }


def test_lcb_rule_keeps_a_consistent_gain_and_rejects_a_noisy_one() -> None:
    base = [1] * 20 + [0] * 80
    noisy = [0] * 10 + [1] * 10 + [1] * 15 + [0] * 65  # +5 points: 15 flips up, 10 down
    steady = [1] * 20 + [1] * 6 + [0] * 74  # +6 points, no flip down
    selection = Selection("selector_pass", "max", 0.0, patience=5, rule="lcb", confidence=0.9)
    state = iter(range(10))
    selection.update(0, _validation(base), lambda: {"s": torch.tensor(next(state))})
    _, extra = selection.update(1, _validation(noisy), lambda: {"s": torch.tensor(next(state))})
    assert extra["paired_difference"] == pytest.approx(0.05) and extra["lcb"] < 0
    assert selection.best_step == 0  # a point rule would have kept it (0.25 > 0.20)
    _, extra = selection.update(2, _validation(steady), lambda: {"s": torch.tensor(next(state))})
    assert extra["lcb"] > 0 and selection.best_step == 2

    point = Selection("selector_pass", "max", 0.0, patience=5, rule="point")
    point.update(0, _validation(base), dict)
    point.update(1, _validation(noisy), dict)
    assert point.best_step == 1


def test_noninferior_rule_keeps_the_latest_state_unless_it_is_significantly_worse() -> None:
    """An on-policy round can move what the selector cannot see: the rule keeps moving (the latest
    state, even at no visible gain) and refuses only a state the selector sees as harm."""
    base = [1] * 20 + [0] * 80
    flat = [0] * 5 + [1] * 15 + [1] * 5 + [0] * 75  # 5 flips down, 5 up: no visible change
    worse = [0] * 15 + [1] * 5 + [0] * 80  # 15 flips down, none up: −15 points
    selection = Selection(
        "selector_pass", "max", 0.0, patience=5, rule="noninferior", confidence=0.9
    )
    selection.update(0, _validation(base), dict)
    _, extra = selection.update(1, _validation(flat), dict)
    assert extra["paired_difference"] == 0 and extra["lcb"] < 0 < extra["ucb"]
    assert selection.best_step == 1  # 'lcb' would have kept the start
    _, extra = selection.update(2, _validation(worse), dict)
    assert extra["ucb"] < 0 and selection.best_step == 1 and selection.misses == 1
    selection.update(3, _validation(flat), dict)
    assert selection.best_step == 3


def test_condition_guard_refuses_a_total_gain_bought_with_one_class() -> None:
    """The toy-cls trade (colon up, liver down): the total's bound is above 0, but one class is
    significantly worse, so the guarded rule keeps the start and the unguarded one the trade."""
    groups = ["colon"] * 50 + ["liver"] * 50
    base = [0] * 50 + [1] * 25 + [0] * 25  # colon 0 %, liver 50 %
    trade = [1] * 40 + [0] * 10 + [1] * 10 + [0] * 40  # colon 80 %, liver 20 %: +15 points
    balanced = [1] * 10 + [0] * 40 + [1] * 27 + [0] * 23  # colon +20, liver +4: no class worse

    def validation(values: list[int]) -> dict:
        return _validation(values) | {"groups": groups}

    guarded = Selection("selector_pass", "max", 0.0, 5, "lcb", 0.9, condition_guard=True)
    plain = Selection("selector_pass", "max", 0.0, 5, "lcb", 0.9)
    for selection in (guarded, plain):
        selection.update(0, validation(base), dict)
        _, extra = selection.update(1, validation(trade), dict)
        assert extra["lcb"] > 0
    assert plain.best_step == 1 and guarded.best_step == 0
    _, extra = guarded.update(2, validation(balanced), dict)
    assert extra["worst_condition_upper_bound"] >= 0 and guarded.best_step == 2
    # the worst class is liver: 15 of its 50 samples flipped down, none up
    differences = [t - b for t, b in zip(trade, base)]
    upper = -lower_bound([-d for d in differences[50:]], 0.9)
    assert upper < 0
    assert worst_condition_bound(differences, groups, 0.9) == pytest.approx(upper)


def test_condition_guard_needs_the_paired_rule() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="condition_guard needs a paired select_rule"):
        SFTWinnersOptions(condition_guard=True, select_rule="point")
    assert SFTWinnersOptions(condition_guard=True).select_rule == "lcb"


def test_condition_guard_needs_the_validators_conditions() -> None:
    selection = Selection("selector_pass", "max", 0.0, 5, "lcb", 0.9, condition_guard=True)
    selection.update(0, _validation([0, 1] * 10), dict)
    with pytest.raises(PipelineError, match="condition_guard needs"):
        selection.update(1, _validation([1, 1] * 10), dict)


def test_on_sampled_layouts_the_bound_counts_layouts_not_samples() -> None:
    """Two layouts gain every sample, two lose most: over 200 samples the gain looks sure, over 4
    layouts drawn at random it is not — the next 4 layouts may be the losing kind."""
    groups = [f"mask:{k}" for k in "abcd" for _ in range(50)]
    base = [0] * 100 + [1] * 100
    candidate = [1] * 100 + [0] * 40 + [1] * 10 + [0] * 30 + [1] * 20
    differences = [c - b for c, b in zip(candidate, base)]
    means = condition_means(differences, groups)
    assert means == pytest.approx([1.0, 1.0, -0.8, -0.6])

    def validation(values: list[int], sampled: bool) -> dict:
        return _validation(values) | {"groups": groups, "sampled_conditions": sampled}

    for sampled, kept in ((False, 1), (True, 0)):
        selection = Selection("selector_pass", "max", 0.0, 5, "lcb", 0.9)
        selection.update(0, validation(base, sampled), dict)
        _, extra = selection.update(1, validation(candidate, sampled), dict)
        assert extra["paired_difference"] == pytest.approx(0.15)
        assert extra["bound_units"] == (4 if sampled else 200)
        assert extra["lcb"] == pytest.approx(lower_bound(means if sampled else differences, 0.9))
        assert selection.best_step == kept
    with pytest.raises(PipelineError, match="'sampled_conditions' needs"):
        condition_means(differences, None)
