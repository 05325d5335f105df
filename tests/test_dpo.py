"""Diffusion-DPO: the public loss, the LoRA helpers and the ``diffusion-dpo`` aligner.

The aligner is exercised on a tiny diffusion generator defined here (an 8-px class-conditional
diffusers ``UNet2DConditionModel`` whose class embedding is the cross-attention context), which
implements the ``DiffusionTarget`` protocol exactly as a real generator must.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from peft.tuners.tuners_utils import BaseTunerLayer
from saadi_align.dpo import (
    ADAPTER_NAME,
    DiffusionDPO,
    anchored_dpo_step,
    dpo_forward,
    encode_pairs,
    reference_prediction,
)
from saadi_align.options import AUTO_REAL_WEIGHT, DiffusionDPOOptions

from saadi_core.conformance import check_aligner
from saadi_core.data.dataset import Dataset, Split
from saadi_core.diffusion.dpo import diffusion_dpo_loss
from saadi_core.diffusion.lora import adapters_disabled, has_lora, lora_parameters, lora_state_dict
from saadi_core.errors import ConfigError, PipelineError
from saadi_core.interfaces import (
    AlignInputs,
    Condition,
    Generator,
    Pair,
    PairSet,
    RunContext,
    Sample,
)
from saadi_core.registry import NoOptions

SIZE = 8
N_CLASSES = 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread. With 2 threads on a loaded 2-core machine OpenMP's
    spin-waiting made these tests 50× slower (measured 130 s vs 2.8 s for one test)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Net(torch.nn.Module):
    """UNet + learned class embedding used as a one-token encoder_hidden_states."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(N_CLASSES, 16)
        self.unet = UNet2DConditionModel(
            sample_size=SIZE,
            in_channels=3,
            out_channels=3,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16,
            attention_head_dim=4,
            norm_num_groups=8,
        )

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, self.embed(class_ids)[:, None, :]).sample


class TinyDiffusion(Generator):
    """A pixel-space class-conditional diffusion generator that is its own DiffusionTarget."""

    kind = "tiny-diffusion"

    def __init__(
        self, options: NoOptions | None = None, context: RunContext | None = None, *, seed: int = 0
    ) -> None:
        super().__init__(options or NoOptions(), context)
        torch.manual_seed(seed)
        self.net = _Net()
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=50)

    # DiffusionTarget
    def encode(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x0 = torch.stack([s.image for s in samples])
        return x0, {"class_ids": torch.tensor([s.condition.class_id for s in samples])}

    def predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return self.net(x_t, t, cond["class_ids"])

    def trainable_module(self) -> torch.nn.Module:
        return self.net

    def lora_target_modules(self) -> list[str]:
        return ["to_q", "to_k", "to_v", "to_out.0"]

    def diffusion_target(self) -> TinyDiffusion:
        return self

    # Generator
    def fit(self, dataset: Dataset) -> None:
        raise NotImplementedError("the tests never train the base")

    def conditions(self, dataset: Dataset) -> list[Condition]:
        return [
            Condition(id=f"class:{n}", class_id=i, class_name=n)
            for i, n in enumerate(dataset.class_names)
        ]

    def sample(
        self, conditions: Sequence[Condition], n_per_condition: int, seed: int
    ) -> list[Sample]:
        scheduler = DDIMScheduler.from_config(self.noise_scheduler.config)
        scheduler.set_timesteps(4)
        out = []
        self.net.eval()
        with torch.no_grad():
            for c in conditions:
                for i in range(n_per_condition):
                    g = torch.Generator().manual_seed(seed * 1000 + 10 * c.class_id + i)
                    x = torch.randn(1, 3, SIZE, SIZE, generator=g)
                    ids = torch.tensor([c.class_id])
                    for t in scheduler.timesteps:
                        x = scheduler.step(self.net(x, t.expand(1), ids), t, x).prev_sample
                    out.append(
                        Sample(
                            image=x[0].clamp(-1, 1),
                            condition=c,
                            generator=self.kind,
                            seed=seed,
                            index=i,
                        )
                    )
        return out

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), path / "net.pt")

    def load(self, path: Path) -> None:
        self.net.load_state_dict(torch.load(path / "net.pt"))


class NotDiffusion(TinyDiffusion):
    def diffusion_target(self):  # the interface default
        return Generator.diffusion_target(self)


def make_dataset() -> Dataset:
    images = np.zeros((N_CLASSES, SIZE, SIZE, 3), dtype=np.uint8)
    split = Split(
        images=images, ids=[f"toy/{i}" for i in range(N_CLASSES)], labels=np.arange(N_CLASSES)
    )
    return Dataset(
        name="tiny", task="classification", class_names=["a", "b", "c"], train=split, test=split
    )


def make_pairs(n_per_class: int = 4, seed: int = 0) -> PairSet:
    """Winners: smooth class-coloured images; losers: noise — a preference the model can learn."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for c in range(N_CLASSES):
        cond = Condition(id=f"class:{c}", class_id=c)
        for i in range(n_per_class):
            colour = torch.full((3, 1, 1), -0.6)
            colour[c] = 0.6
            winner = (colour + 0.05 * torch.randn(3, SIZE, SIZE, generator=g)).clamp(-1, 1)
            loser = torch.rand(3, SIZE, SIZE, generator=g) * 2 - 1
            pairs.append(
                Pair(
                    winner=Sample(image=winner, condition=cond, generator="tiny", seed=0, index=i),
                    loser=Sample(
                        image=loser, condition=cond, generator="tiny", seed=0, index=100 + i
                    ),
                    winner_score=0.9,
                    loser_score=0.1,
                )
            )
    return PairSet(pairs=pairs, stats={"n_pairs": len(pairs)})


def make_aligner(**options) -> DiffusionDPO:
    # the real-image anchor is off unless a test asks for it: these tests look at the pairs alone
    base = {"steps": 3, "batch_size": 4, "lr": 3e-3, "beta": 500.0, "seed": 0, "real_weight": 0.0}
    return DiffusionDPO(DiffusionDPOOptions(**{**base, **options}))


def base_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Module weights without adapters, under their names before LoRA was attached."""
    return {
        k.replace(".base_layer.", "."): v.detach().clone()
        for k, v in module.state_dict().items()
        if "lora_" not in k
    }


def fixed_batch(gen: TinyDiffusion, pairs: PairSet, seed: int = 123, repeats: int = 1):
    """Every pair ``repeats`` times with fixed shared noise and timesteps (before/after comparisons;
    single draws are noisy because the DPO signal varies strongly with the timestep)."""
    cache = encode_pairs(gen, pairs, chunk=7)
    index = torch.arange(len(cache)).repeat(repeats)
    x0, cond = cache.batch(index, torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(index), *x0.shape[1:]), generator=g)
    t = torch.randint(0, 50, (len(index),), generator=g)
    return x0, cond, torch.cat([noise, noise]), torch.cat([t, t])


# --------------------------------------------------------------------------- the loss


def test_loss_matches_hand_computation() -> None:
    # 2 pairs, 2 elements per sample; target 0 so errors are mean squares of the predictions
    target = torch.zeros(4, 2)
    model = torch.tensor([[0.1, 0.3], [0.1, 0.2], [0.4, 0.0], [0.1, 0.1]], requires_grad=True)
    ref = torch.tensor([[0.2, 0.2], [0.2, 0.2], [0.2, 0.2], [0.2, 0.2]])
    beta = 50.0
    err = lambda row: (row[0] ** 2 + row[1] ** 2) / 2  # noqa: E731
    m = [err(r) for r in model.tolist()]
    r = [err(x) for x in ref.tolist()]
    dw = [m[0] - r[0], m[1] - r[1]]
    dl = [m[2] - r[2], m[3] - r[3]]
    terms = [-math.log(1 / (1 + math.exp(beta * (dw[i] - dl[i])))) for i in range(2)]
    out = diffusion_dpo_loss(model, ref, target, beta=beta)
    assert out.loss.item() == pytest.approx(sum(terms) / 2, rel=1e-6)
    assert out.implicit_accuracy == 0.5 and dw[0] < dl[0] and dw[1] > dl[1]
    assert out.reward_margin == pytest.approx(
        -beta * ((dw[0] - dl[0]) + (dw[1] - dl[1])) / 2, rel=1e-5
    )
    assert out.model_error_w == pytest.approx((m[0] + m[1]) / 2, rel=1e-6)
    assert out.ref_error_l == pytest.approx((r[2] + r[3]) / 2, rel=1e-6)
    # the diffusers example writes the same loss with -0.5 * beta_dpo: beta_dpo = 2 * beta
    inside = -0.5 * (2 * beta) * (torch.tensor(dw) - torch.tensor(dl))
    assert out.loss.item() == pytest.approx(
        float(-torch.nn.functional.logsigmoid(inside).mean()), rel=1e-6
    )
    # SFT term: sft_weight * beta * mean(Δw), gradient flows only through the model prediction
    with_sft = diffusion_dpo_loss(model, ref, target, beta=beta, sft_weight=0.5)
    assert with_sft.loss.item() == pytest.approx(
        out.loss.item() + 0.5 * beta * sum(dw) / 2, rel=1e-5
    )
    with_sft.loss.backward()
    assert model.grad is not None and model.grad.abs().sum() > 0


def test_loss_is_ln2_when_model_equals_reference() -> None:
    pred = torch.randn(6, 3, 4, 4)
    out = diffusion_dpo_loss(pred, pred.clone(), torch.randn(6, 3, 4, 4), beta=5000.0)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert out.implicit_accuracy == 0.0 and out.reward_margin == 0.0


def test_loss_rejects_odd_or_mismatched_batches() -> None:
    with pytest.raises(ValueError, match="even"):
        diffusion_dpo_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), beta=1.0)
    with pytest.raises(ValueError, match="same shape"):
        diffusion_dpo_loss(torch.zeros(4, 2), torch.zeros(4, 3), torch.zeros(4, 2), beta=1.0)


# --------------------------------------------------------------------------- the aligner


def test_first_step_loss_is_ln2_and_training_improves_fixed_pairs(tmp_path: Path) -> None:
    gen, pairs = TinyDiffusion(), make_pairs()
    before_weights = base_weights(gen.net)
    result = make_aligner(steps=40).align(
        gen, AlignInputs(pairs=pairs, dataset=make_dataset()), tmp_path
    )
    steps = [h for h in result.history if h["event"] == "dpo_step"]
    assert len(steps) == 40
    assert abs(steps[0]["loss"] - math.log(2)) < 1e-6
    assert steps[0]["implicit_accuracy"] == 0.0
    assert all({"loss", "implicit_accuracy", "reward_margin", "grad_norm"} <= set(h) for h in steps)

    # on fixed pairs, noise and timesteps: lower loss, higher implicit accuracy than at init (ln 2, 0)
    x0, cond, noise, t = fixed_batch(gen, pairs, repeats=8)
    with torch.no_grad():
        after = dpo_forward(gen, x0, cond, noise, t, beta=500.0)
    assert after.dpo_loss < math.log(2) - 0.15  # measured ≈ 0.34
    assert after.implicit_accuracy > 0.7  # measured ≈ 0.87

    # the base weights are untouched and the reference is still the base network
    assert base_weights(gen.net).keys() == before_weights.keys()
    assert all(torch.equal(before_weights[k], v) for k, v in base_weights(gen.net).items())
    fresh = TinyDiffusion()
    x_t = gen.noise_scheduler.add_noise(x0, noise, t)
    with torch.no_grad():
        base_pred = fresh.predict(x_t, t, cond)
        adapted_pred = gen.predict(x_t, t, cond)
    assert torch.equal(reference_prediction(gen, x_t, t, cond), base_pred)
    assert not torch.allclose(adapted_pred, base_pred)
    assert result.meta["selected"] == "final" and result.meta["n_pairs"] == len(pairs)


class GuidedTinyDiffusion(TinyDiffusion):
    """TinyDiffusion with an unconditional input (class id -1 = the empty prompt), recording
    the conditioning of every prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def unconditional(self, cond: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"class_ids": torch.full_like(cond["class_ids"], -1)}

    def predict(self, x_t, t, cond):
        self.seen.append(cond["class_ids"].clone())
        return self.net(x_t, t, cond["class_ids"].clamp(min=0))


def test_condition_dropout_trains_pairs_on_the_unconditional_input(tmp_path: Path) -> None:
    gen = GuidedTinyDiffusion()
    make_aligner(steps=30, condition_dropout=0.5).align(
        gen, AlignInputs(pairs=make_pairs(), dataset=make_dataset()), tmp_path
    )
    forwards = gen.seen[::2]  # reference, then adapted, on the same rows: 4 winners, 4 losers
    assert len(forwards) == 30 and all(torch.equal(a, b) for a, b in zip(forwards, gen.seen[1::2]))
    dropped = torch.cat([ids == -1 for ids in forwards])
    assert 0.3 < float(dropped.float().mean()) < 0.7
    for ids in forwards:  # a winner and its loser are dropped together
        assert torch.equal(ids[:4] == -1, ids[4:] == -1)

    gen = GuidedTinyDiffusion()
    make_aligner(steps=5).align(
        gen, AlignInputs(pairs=make_pairs(), dataset=make_dataset()), tmp_path
    )
    assert all((ids >= 0).all() for ids in gen.seen)  # off by default


def test_condition_dropout_needs_an_unconditional_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="condition_dropout=0.2 needs a generator"):
        make_aligner(condition_dropout=0.2).align(
            TinyDiffusion(), AlignInputs(pairs=make_pairs(), dataset=make_dataset()), tmp_path
        )


class RecordingTinyDiffusion(TinyDiffusion):
    """TinyDiffusion recording the class ids of every prediction (reference and adapted)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def predict(self, x_t, t, cond):
        self.seen.append(cond["class_ids"].clone())
        return super().predict(x_t, t, cond)


def real_batch(seed: int = 7, repeats: int = 16):
    """The 3 real training images of ``make_dataset`` (black, one per class) with fixed noise."""
    ds = make_dataset()
    x0 = torch.from_numpy(ds.train.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    x0 = x0.repeat(repeats, 1, 1, 1)
    cond = {"class_ids": torch.arange(N_CLASSES).repeat(repeats)}
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=g)
    return x0, cond, noise, torch.randint(0, 50, (x0.shape[0],), generator=g)


def real_delta(gen: TinyDiffusion, batch) -> torch.Tensor:
    """err_θ − err_ref per real image, computed here by hand (> 0: worse than the base)."""
    x0, cond, noise, t = batch
    x_t = gen.noise_scheduler.add_noise(x0, noise, t)
    goal = noise  # the tiny scheduler predicts ε
    with torch.no_grad():
        err = (gen.predict(x_t, t, cond) - goal).pow(2).flatten(1).mean(1)
        ref = (reference_prediction(gen, x_t, t, cond) - goal).pow(2).flatten(1).mean(1)
    return err - ref


def test_real_anchor_is_the_denoising_loss_of_real_images_scaled_by_beta(tmp_path: Path) -> None:
    gen, pairs = TinyDiffusion(), make_pairs()
    make_aligner(steps=10).align(gen, AlignInputs(pairs=pairs, dataset=make_dataset()), tmp_path)
    x0, cond, noise, t = fixed_batch(gen, pairs)
    real = real_batch(repeats=2)
    loss, metrics = anchored_dpo_step(gen, (x0, cond, noise, t), real, 500.0, 0.5, 2.0)
    plain = dpo_forward(gen, x0, cond, noise, t, beta=500.0, sft_weight=0.5)
    delta = real_delta(gen, real)
    assert abs(float(delta.mean())) > 1e-5  # the adapter has moved: the term is not trivially 0
    assert metrics["real_delta"] == pytest.approx(float(delta.mean()), rel=1e-4)
    assert loss.item() == pytest.approx(
        plain.loss.item() + 2.0 * 500.0 * delta.mean().item(), rel=1e-4
    )
    assert metrics["dpo_loss"] == pytest.approx(plain.dpo_loss, rel=1e-5)
    loss.backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in lora_parameters(gen.net, ADAPTER_NAME)
    )


def test_real_anchor_trains_on_real_rows_and_lowers_their_error(
    tmp_path: Path,
) -> None:
    inputs = AlignInputs(pairs=make_pairs(), dataset=make_dataset())
    gen = RecordingTinyDiffusion()
    result = make_aligner(steps=40, real_weight=4.0).align(gen, inputs, tmp_path / "a")
    # every forward: 4 winners, 4 losers, then 4 real images (black, drawn over the 3 classes)
    assert {len(ids) for ids in gen.seen} == {12}
    assert {int(i) for ids in gen.seen for i in ids[8:]} == {0, 1, 2}
    steps = [h for h in result.history if h["event"] == "dpo_step"]
    assert all("real_delta" in h for h in steps) and result.meta["n_real"] == N_CLASSES
    anchored = float(real_delta(gen, real_batch()).mean())

    free = TinyDiffusion()
    free_result = make_aligner(steps=40).align(free, inputs, tmp_path / "b")
    assert not any("real_delta" in h for h in free_result.history)
    # the anchor trains the adapter on the real images: it denoises them better than pairs alone
    # (measured mean err_θ − err_ref: −0.33 anchored, −0.26 pairs only)
    assert anchored < float(real_delta(free, real_batch()).mean()) - 0.03


def test_real_anchor_needs_real_images_under_the_generators_conditions(tmp_path: Path) -> None:
    dataset = make_dataset()
    dataset.train.labels[:] = 2  # every real image is class c, which the generator does not draw
    gen = TinyDiffusion()
    gen.conditions = lambda ds: [Condition(id="class:a", class_id=0, class_name="a")]
    inputs = AlignInputs(pairs=make_pairs(), dataset=dataset)
    asked = "real_weight: generator 'tiny-diffusion' has no condition"
    with pytest.raises(PipelineError, match=asked):
        make_aligner(real_weight=1.0).align(gen, inputs, tmp_path / "asked")
    # left at its default (None), the anchor turns itself off and says why
    result = make_aligner(real_weight=None).align(gen, inputs, tmp_path / "default")
    assert result.meta["real_anchor"].startswith(f"off: {asked}")
    assert not any("real_delta" in h for h in result.history)


def test_real_anchor_is_on_by_default_where_real_images_fit(tmp_path: Path) -> None:
    assert DiffusionDPOOptions().real_weight is None
    gen = RecordingTinyDiffusion()
    result = make_aligner(real_weight=None, steps=2).align(
        gen, AlignInputs(pairs=make_pairs(), dataset=make_dataset()), tmp_path
    )
    assert result.meta["real_anchor"] == f"on: weight {AUTO_REAL_WEIGHT:g}, 3 real images"
    assert result.meta["real_weight"] == AUTO_REAL_WEIGHT and {len(ids) for ids in gen.seen} == {12}


def test_reference_runs_without_graph_and_adapters_come_back(tmp_path: Path) -> None:
    gen, pairs = TinyDiffusion(), make_pairs(1)
    make_aligner(steps=2).align(gen, AlignInputs(pairs=pairs, dataset=make_dataset()), tmp_path)
    x0, cond, noise, t = fixed_batch(gen, pairs)
    x_t = gen.noise_scheduler.add_noise(x0, noise, t)
    ref = reference_prediction(gen, x_t, t, cond)
    assert torch.is_inference(ref) and not ref.requires_grad
    pred = gen.predict(x_t, t, cond)  # adapters re-enabled after the reference forward
    assert pred.requires_grad and not torch.allclose(pred.detach(), ref)
    with adapters_disabled(gen.net), torch.no_grad():
        assert torch.equal(gen.predict(x_t, t, cond), ref)


def test_pairs_are_encoded_once_per_distinct_sample() -> None:
    gen, pairs = TinyDiffusion(), make_pairs(2)
    shared = pairs.pairs[0].winner  # one winner in several pairs (the paper's cross product)
    pairs.pairs.append(
        Pair(winner=shared, loser=pairs.pairs[1].loser, winner_score=0.9, loser_score=0.2)
    )
    calls = []
    original = gen.encode
    gen.encode = lambda samples: calls.append(len(samples)) or original(samples)  # type: ignore[method-assign]
    cache = encode_pairs(gen, pairs, chunk=5)
    assert sum(calls) == 2 * (len(pairs) - 1) and max(calls) <= 5
    x0, cond = cache.batch(torch.tensor([0, len(pairs) - 1]), torch.device("cpu"))
    assert torch.equal(x0[0], x0[1]) and torch.equal(x0[0], shared.image)
    assert torch.equal(x0[3], pairs.pairs[1].loser.image) and cond["class_ids"].tolist() == [
        0,
        0,
        0,
        0,
    ]


def test_save_restore_reproduces_the_aligned_generator(tmp_path: Path) -> None:
    gen, pairs = TinyDiffusion(), make_pairs(2)
    aligner = make_aligner(steps=5, rank=4, dropout=0.1)
    result = aligner.align(gen, AlignInputs(pairs=pairs, dataset=make_dataset()), tmp_path / "work")
    aligner.save(result, tmp_path / "saved")
    assert (tmp_path / "saved" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "saved" / "history.json").is_file()

    restored = make_aligner().restore(TinyDiffusion(), tmp_path / "saved")
    x0, cond, noise, t = fixed_batch(gen, pairs)
    x_t = gen.noise_scheduler.add_noise(x0, noise, t)
    gen.net.eval()
    restored.net.eval()
    # restored for sampling: the adapter is merged into the weights (no extra products per layer),
    # which changes the arithmetic only by float rounding
    tuners = [m for m in restored.net.modules() if isinstance(m, BaseTunerLayer)]
    assert tuners and all(m.merged for m in tuners)
    with torch.no_grad():
        assert torch.allclose(gen.predict(x_t, t, cond), restored.predict(x_t, t, cond), atol=1e-5)
    conditions = gen.conditions(make_dataset())
    a = gen.sample(conditions, 2, seed=7)
    b = restored.sample(conditions, 2, seed=7)
    assert all(torch.allclose(x.image, y.image, atol=1e-4) for x, y in zip(a, b))
    base = TinyDiffusion().sample(conditions, 2, seed=7)
    assert not all(torch.equal(x.image, y.image) for x, y in zip(a, base))


def test_restore_onto_a_different_network_fails_clearly(tmp_path: Path) -> None:
    gen = TinyDiffusion()
    aligner = make_aligner(steps=1, target_modules=["to_q"])
    aligner.save(
        aligner.align(gen, AlignInputs(pairs=make_pairs(1), dataset=make_dataset()), tmp_path),
        tmp_path / "s",
    )
    with pytest.raises(PipelineError, match="do not match"):
        make_aligner().restore(NotMatching(), tmp_path / "s")


class NotMatching(TinyDiffusion):
    def trainable_module(self) -> torch.nn.Module:
        return self.net.embed  # has no to_q layer


def test_empty_pairs_and_non_diffusion_generators_are_refused(tmp_path: Path) -> None:
    empty = PairSet(
        pairs=[],
        stats={"conditions_without_winner": ["class:a", "class:b"], "conditions_without_loser": []},
    )
    with pytest.raises(
        PipelineError,
        match=r"no preference pairs.*2 condition\(s\) without a winner.*threshold h.*pool",
    ):
        make_aligner().align(
            TinyDiffusion(), AlignInputs(pairs=empty, dataset=make_dataset()), tmp_path
        )
    with pytest.raises(PipelineError, match="exposes no diffusion target"):
        make_aligner().align(
            NotDiffusion(), AlignInputs(pairs=make_pairs(1), dataset=make_dataset()), tmp_path
        )


def test_networks_with_their_own_adapters_are_refused(tmp_path: Path) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    gen = TinyDiffusion()
    inject_adapter_in_model(LoraConfig(r=2, target_modules=["to_q"]), gen.net, adapter_name="style")
    with pytest.raises(
        PipelineError, match="already carries peft adapter\\(s\\) style; merge them"
    ):
        make_aligner().align(
            gen, AlignInputs(pairs=make_pairs(1), dataset=make_dataset()), tmp_path
        )


def test_unknown_target_modules_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="target_modules"):
        make_aligner(target_modules=["no_such_layer"]).align(
            TinyDiffusion(), AlignInputs(pairs=make_pairs(1), dataset=make_dataset()), tmp_path
        )


def test_bf16_forwards_keep_fp32_adapters_and_ln2_at_init(tmp_path: Path) -> None:
    gen = TinyDiffusion()
    result = make_aligner(steps=2, mixed_precision="bf16").align(
        gen, AlignInputs(pairs=make_pairs(1), dataset=make_dataset()), tmp_path
    )
    assert result.meta["mixed_precision"] == "bf16"
    assert (
        abs(result.history[0]["loss"] - math.log(2)) < 1e-6
    )  # reference and model in the same precision
    assert math.isfinite(result.history[1]["loss"])
    assert {p.dtype for p in lora_parameters(gen.net, ADAPTER_NAME)} == {torch.float32}


# --------------------------------------------------------------------------- validation


class ScriptedValidator:
    """Returns a scripted metric sequence and records the adapter state it was called with."""

    def __init__(self, values: list[float]) -> None:
        self.values, self.states, self.calls = list(values), [], 0

    def __call__(self, generator: Generator) -> dict[str, float]:
        self.states.append(lora_state_dict(generator.net, ADAPTER_NAME))
        value = self.values[self.calls]
        self.calls += 1
        return {"selector_pass": value, "oracle_pass": 1 - value}


def test_validation_keeps_the_best_state_and_stops_early(tmp_path: Path) -> None:
    gen = TinyDiffusion()
    validator = ScriptedValidator([0.5, 0.6, 0.7, 0.65, 0.7, 0.9, 0.9])
    inputs = AlignInputs(pairs=make_pairs(1), dataset=make_dataset(), validate=validator)
    result = make_aligner(steps=20, validate_every=2, patience=2).align(gen, inputs, tmp_path)
    # validations at steps 0, 2, 4, 6, 8: best at 4 (0.7); 0.65 and an equal 0.7 are two misses
    assert validator.calls == 5
    validations = [h for h in result.history if h["event"] == "dpo_validate"]
    assert [h["step"] for h in validations] == [0, 2, 4, 6, 8]
    assert validations[2]["selector_pass"] == 0.7 and "oracle_pass" in validations[2]
    assert (
        result.meta["best_step"] == 4
        and result.meta["stopped_early"]
        and result.meta["steps_run"] == 8
    )
    assert result.meta["selected"] == "step 4" and not result.meta["aligned_equals_base"]
    final = lora_state_dict(gen.net, ADAPTER_NAME)
    assert all(torch.equal(final[k], validator.states[2][k]) for k in final)
    assert not all(torch.equal(final[k], validator.states[4][k]) for k in final)


def test_validation_samples_merged_and_leaves_the_reference_exact(tmp_path: Path) -> None:
    gen, pairs = TinyDiffusion(), make_pairs(1)
    merged_during: list[list[bool]] = []

    def validate(generator):
        layers = [m for m in generator.net.modules() if isinstance(m, BaseTunerLayer)]
        merged_during.append([m.merged for m in layers])
        return {"selector_pass": 0.5}

    inputs = AlignInputs(pairs=pairs, dataset=make_dataset(), validate=validate)
    make_aligner(steps=4, validate_every=2, select_rule="point").align(gen, inputs, tmp_path)
    assert len(merged_during) == 3 and all(flags and all(flags) for flags in merged_during)
    assert not any(m.merged for m in gen.net.modules() if isinstance(m, BaseTunerLayer))
    # the base weights - Diffusion-DPO's reference - are bit-identical to an untouched network's
    x0, cond, noise, t = fixed_batch(gen, pairs)
    x_t = gen.noise_scheduler.add_noise(x0, noise, t)
    with adapters_disabled(gen.net), torch.no_grad():
        assert torch.equal(gen.predict(x_t, t, cond), TinyDiffusion().predict(x_t, t, cond))


def test_validation_can_select_the_base_model(tmp_path: Path) -> None:
    gen = TinyDiffusion()
    validator = ScriptedValidator([0.3, 0.8, 0.9])  # "oracle_pass" = 1 - value falls
    inputs = AlignInputs(pairs=make_pairs(1), dataset=make_dataset(), validate=validator)
    result = make_aligner(steps=4, validate_every=2, select_metric="oracle_pass").align(
        gen, inputs, tmp_path
    )
    assert result.meta["best_step"] == 0 and result.meta["aligned_equals_base"]
    assert "equals the base" in result.meta["note"] and not result.meta["stopped_early"]
    x0, cond, noise, t = fixed_batch(gen, make_pairs(1))
    x_t = gen.noise_scheduler.add_noise(x0, noise, t)
    with torch.no_grad():
        assert torch.equal(gen.predict(x_t, t, cond), TinyDiffusion().predict(x_t, t, cond))


def test_noninferior_rule_keeps_the_last_adapter_when_the_selector_sees_no_change(
    tmp_path: Path,
) -> None:
    """The on-policy case: validation shows the same per-sample passes at every step. 'lcb' keeps
    the starting model; 'noninferior' keeps training's last state (and its weights)."""

    def flat(generator):
        return {"selector_pass": 0.5, "per_sample": {"selector_pass": [1.0, 0.0] * 10}}

    kept = {}
    for rule in ("lcb", "noninferior"):
        gen = TinyDiffusion()
        inputs = AlignInputs(pairs=make_pairs(1), dataset=make_dataset(), validate=flat)
        result = make_aligner(steps=4, validate_every=2, select_rule=rule).align(
            gen, inputs, tmp_path / rule
        )
        kept[rule] = result.meta["best_step"]
        if rule == "noninferior":
            assert result.meta["selected"] == "step 4" and not result.meta["aligned_equals_base"]
            x0, cond, noise, t = fixed_batch(gen, make_pairs(1))
            x_t = gen.noise_scheduler.add_noise(x0, noise, t)
            with torch.no_grad():  # the adapter moved: not the base model
                assert not torch.equal(
                    gen.predict(x_t, t, cond), TinyDiffusion().predict(x_t, t, cond)
                )
    assert kept == {"lcb": 0, "noninferior": 4}


def test_validation_metric_must_exist(tmp_path: Path) -> None:
    inputs = AlignInputs(
        pairs=make_pairs(1), dataset=make_dataset(), validate=ScriptedValidator([0.5])
    )
    with pytest.raises(ConfigError, match="select_metric='fid'.*oracle_pass, selector_pass"):
        make_aligner(select_metric="fid").align(TinyDiffusion(), inputs, tmp_path)


def test_existing_adapter_is_continued_not_replaced(tmp_path: Path) -> None:
    gen, pairs = TinyDiffusion(), make_pairs(1)
    make_aligner(steps=3).align(gen, AlignInputs(pairs=pairs, dataset=make_dataset()), tmp_path)
    state = lora_state_dict(gen.net, ADAPTER_NAME)
    result = make_aligner(steps=1).align(
        gen, AlignInputs(pairs=pairs, dataset=make_dataset()), tmp_path
    )
    first = result.history[0]
    assert (
        result.meta["continued_from_existing_adapter"] and abs(first["loss"] - math.log(2)) > 1e-4
    )
    assert has_lora(gen.net, ADAPTER_NAME) and len(lora_parameters(gen.net, ADAPTER_NAME)) == len(
        state
    )


def test_aligner_passes_the_conformance_check(tmp_path: Path) -> None:
    check_aligner(
        make_aligner(steps=3),
        TinyDiffusion(seed=3),
        make_dataset(),
        fit_generator=False,
        work_dir=tmp_path,
    )


MULTI_PROCESS_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, {tests!r})
import torch
from accelerate import Accelerator
from test_dpo import TinyDiffusion, make_aligner, make_dataset, make_pairs
from saadi_align.dpo import ADAPTER_NAME, DiffusionDPO
from saadi_core.diffusion.lora import lora_state_dict
from saadi_core.interfaces import AlignInputs, RunContext

accelerator = Accelerator(cpu=True)
gen = TinyDiffusion()
aligner = DiffusionDPO(make_aligner(steps=4, batch_size=2).options, RunContext(accelerator=accelerator))
result = aligner.align(gen, AlignInputs(pairs=make_pairs(2), dataset=make_dataset()), None)
state = lora_state_dict(gen.net, ADAPTER_NAME)
digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
out = {{"digest": digest, "history": result.history, "meta": result.meta}}
with open(sys.argv[1] + f"/rank{{accelerator.process_index}}.json", "w") as f:
    json.dump(out, f)
"""


@pytest.mark.slow
def test_two_cpu_processes_train_one_adapter(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2`` (what ``accelerate launch`` runs): both processes end with
    identical adapters (same init, averaged gradients) and a history like a single process's."""
    import json

    script = tmp_path / "run.py"
    script.write_text(MULTI_PROCESS_SCRIPT.format(tests=str(Path(__file__).parent)))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        str(script),
        str(tmp_path),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert all(r["meta"]["num_processes"] == 2 for r in ranks)
    assert (
        ranks[0]["history"][1]["loss"] != ranks[1]["history"][1]["loss"]
    )  # each process its own batches

    single = make_aligner(steps=4, batch_size=2).align(
        TinyDiffusion(), AlignInputs(pairs=make_pairs(2), dataset=make_dataset()), tmp_path
    )
    for history in (ranks[0]["history"], single.history):
        assert len(history) == 4 and abs(history[0]["loss"] - math.log(2)) < 1e-6
        assert set(history[-1]) == set(single.history[-1])
    assert single.meta["num_processes"] == 1


# --------------------------------------------------------------------------- plugin


def test_plugin_registers_through_the_entry_point_without_torch() -> None:
    code = (
        "import sys\n"
        "import saadi_align.plugin\n"
        "from saadi_core.registry import Registry\n"
        "r = Registry.discover(only=['align'])\n"
        "entries = {k: r.get('aligner', k) for k in ('diffusion-dpo', 'iterative', 'sft-winners', 'diffusion-kto')}\n"
        "assert all(e.plugin == 'align' for e in entries.values()), entries\n"
        "paper = entries['diffusion-dpo'].build_options({}, profile='paper')\n"
        "assert paper.lr == 1e-5 and paper.steps == 1500, paper\n"
        "assert entries['iterative'].build_options({}).inner.kind == 'diffusion-dpo'\n"
        "assert entries['diffusion-kto'].build_options({}, profile='paper').validation_size is None\n"
        "assert entries['sft-winners'].build_options({}).select_rule == 'lcb'\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
