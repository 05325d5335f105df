"""``diffusion-dpo``: Diffusion-DPO (SAADi Eq. 4) on LoRA adapters, for any diffusion generator.

The aligner talks to a generator only through :class:`saadi_core.interfaces.DiffusionTarget`, so
SSD, SSI and every third-party diffusion generator are aligned by this one loop. What makes it
cheap (``benchmarks/dpo_step.py`` measures it against the straightforward version):

* winners and losers are encoded ONCE up front (VAE/text encoder never run inside the loop);
  every distinct sample is encoded once even when it appears in many pairs;
* the reference is the same network with its adapters switched off, run under
  ``torch.inference_mode`` — no deep copy, no activations kept;
* winner and loser go through ONE forward, concatenated on the batch dim, with the same noise
  and timestep (the layout :func:`saadi_core.diffusion.dpo.diffusion_dpo_loss` expects).

Training runs through an ``accelerate.Accelerator`` (the run's, or one made here): forwards under
its autocast (bf16 when configured; the LoRA weights stay float32), LoRA gradients averaged across
processes, each process drawing its own mini-batches — with N processes the effective batch is
``N × batch_size`` pairs. If the run gives a validator, the adapter state is validated every
``validate_every`` steps (and before the first step), the best state is kept, training stops
after ``patience`` validations without improvement, and the best state is restored at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from saadi_align.labelled import real_samples
from saadi_align.options import AUTO_REAL_WEIGHT, DiffusionDPOOptions
from saadi_align.training import (
    ADAPTER_DIR,
    HISTORY_FILE,
    Batches,
    IndexSampler,
    LoraAligner,
    StepOutput,
    diffusion_target_of,
    encode_samples,
    index_cond,
    set_gradient_checkpointing,
)
from saadi_core.diffusion.dpo import DPOLossOutput, diffusion_dpo_loss, per_sample_error
from saadi_core.diffusion.lora import adapters_disabled
from saadi_core.diffusion.targets import training_target
from saadi_core.errors import ConfigError, PipelineError
from saadi_core.interfaces import AlignInputs, DiffusionTarget, Generator, PairSet, Sample

__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_NAME",
    "HISTORY_FILE",
    "DiffusionDPO",
    "PairSampler",
    "PreferenceCache",
    "RealAnchor",
    "anchored_dpo_step",
    "real_anchor",
    "diffusion_target_of",
    "dpo_forward",
    "encode_pairs",
    "reference_prediction",
    "set_gradient_checkpointing",
]

#: peft adapter name of this aligner on the generator's network
ADAPTER_NAME = "saadi_dpo"
#: pairs are drawn like any other items (seeded permutations, full batches)
PairSampler = IndexSampler


@dataclass
class PreferenceCache:
    """Encoded preference pairs: each distinct sample's ``x0`` and conditioning once (host memory),
    and per pair the rows of its winner and loser."""

    x0: torch.Tensor
    cond: dict[str, torch.Tensor]
    winners: torch.Tensor
    losers: torch.Tensor

    def __len__(self) -> int:
        return int(self.winners.shape[0])

    def batch(
        self, pair_index: torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``x0`` and ``cond`` of the given pairs as ``2B`` rows: winners, then their losers."""
        rows = torch.cat([self.winners[pair_index], self.losers[pair_index]])
        x0 = self.x0[rows].to(device)
        return x0, {k: v.to(device) for k, v in index_cond(self.cond, rows).items()}


def encode_pairs(target: DiffusionTarget, pairs: PairSet, chunk: int) -> PreferenceCache:
    """Encode every distinct winner/loser once (in chunks of ``chunk`` samples)."""
    unique: list[Sample] = []
    row_of: dict[int, int] = {}
    winners, losers = [], []
    for pair in pairs:
        for sample, rows in ((pair.winner, winners), (pair.loser, losers)):
            if id(sample) not in row_of:
                row_of[id(sample)] = len(unique)
                unique.append(sample)
            rows.append(row_of[id(sample)])
    x0, cond = encode_samples(target, unique, chunk)
    return PreferenceCache(
        x0=x0,
        cond=cond,
        winners=torch.tensor(winners, dtype=torch.long),
        losers=torch.tensor(losers, dtype=torch.long),
    )


def reference_prediction(
    target: DiffusionTarget, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
) -> torch.Tensor:
    """The frozen base's prediction: the same network with adapters off, keeping no graph."""
    with torch.inference_mode(), adapters_disabled(target.trainable_module()):
        return target.predict(x_t, t, cond)


def _predictions(
    target: DiffusionTarget,
    x0: torch.Tensor,
    cond: dict[str, torch.Tensor],
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adapted prediction, reference prediction (no graph) and regression goal for every row."""
    scheduler = target.noise_scheduler
    x_t = scheduler.add_noise(x0, noise, timesteps)
    goal = training_target(scheduler, x0, noise, timesteps)
    with autocast():
        ref = reference_prediction(target, x_t, timesteps, cond)
        pred = target.predict(x_t, timesteps, cond)
    return pred, ref, goal


def dpo_forward(
    target: DiffusionTarget,
    x0: torch.Tensor,
    cond: dict[str, torch.Tensor],
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    beta: float,
    sft_weight: float = 0.0,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> DPOLossOutput:
    """Eq. 4 for ``2B`` rows (winners then losers) with ``noise``/``timesteps`` already shared by
    each winner and its loser: one reference forward (no graph) + one adapted forward."""
    pred, ref, goal = _predictions(target, x0, cond, noise, timesteps, autocast)
    return diffusion_dpo_loss(pred, ref, goal, beta=beta, sft_weight=sft_weight)


@dataclass
class RealAnchor:
    """Real training images, encoded once, that every DPO step also denoises.

    Their term ``weight · β · mean(err_θ − err_ref)`` has the gradient of the plain denoising loss
    on real images (the reference part is constant), so the adapter is pulled back towards the
    data while Eq. 4 pushes it towards the winners. On toy-cls it cut DPO's drift away from the
    real images' look (FID in the selector's features) from +52 to +8 on average and lost no
    seed (docs/benchmarks.md). Scaled by β like ``sft_weight``, so the weight means the same at
    any β.
    """

    x0: torch.Tensor
    cond: dict[str, torch.Tensor]
    sampler: IndexSampler
    weight: float

    def batch(self, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The next ``x0`` and conditioning of real images, on ``device``."""
        rows = self.sampler.next()
        return self.x0[rows].to(device), {
            k: v.to(device) for k, v in index_cond(self.cond, rows).items()
        }


def anchored_dpo_step(
    target: DiffusionTarget,
    pairs: tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor],
    real: tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor],
    beta: float,
    sft_weight: float,
    real_weight: float,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> StepOutput:
    """Eq. 4 on the ``2B`` pair rows plus the real-image anchor on ``R`` more rows, in one
    forward. Each of ``pairs``/``real`` is ``(x0, cond, noise, timesteps)``; the extra metric
    ``real_delta`` is ``mean(err_θ − err_ref)`` on the real rows (> 0: the adapter denoises real
    images worse than the base, i.e. it drifts from the data)."""
    n_pair_rows = pairs[0].shape[0]
    x0, noise, t = (torch.cat([pairs[i], real[i]]) for i in (0, 2, 3))
    cond = {k: torch.cat([pairs[1][k], real[1][k]]) for k in pairs[1]}
    pred, ref, goal = _predictions(target, x0, cond, noise, t, autocast)
    out = diffusion_dpo_loss(
        pred[:n_pair_rows], ref[:n_pair_rows], goal[:n_pair_rows], beta=beta, sft_weight=sft_weight
    )
    real_delta = (
        per_sample_error(pred[n_pair_rows:], goal[n_pair_rows:])
        - per_sample_error(ref[n_pair_rows:], goal[n_pair_rows:]).detach()
    ).mean()
    loss = out.loss + real_weight * beta * real_delta
    return loss, out.metrics() | {
        "loss": float(loss.detach()),
        "real_delta": float(real_delta.detach()),
    }


@dataclass
class _PairBatches(Batches):
    """Mini-batches of preference pairs with one noise and timestep shared by winner and loser."""

    target: DiffusionTarget
    cache: PreferenceCache
    sampler: IndexSampler
    rng: torch.Generator
    beta: float
    sft_weight: float
    condition_dropout: float = 0.0
    real: RealAnchor | None = None

    def __post_init__(self) -> None:
        self.meta = {"n_pairs": len(self.cache), "n_encoded_samples": int(self.cache.x0.shape[0])}
        if self.real is not None:
            self.meta |= {"n_real": int(self.real.x0.shape[0]), "real_weight": self.real.weight}

    def step(
        self, device: torch.device, autocast: Callable[[], AbstractContextManager[Any]]
    ) -> StepOutput:
        x0, cond = self.cache.batch(self.sampler.next(), device)
        half = x0.shape[0] // 2
        noise, t = self._noise_and_timesteps(half, x0, device)
        if self.condition_dropout > 0:
            drop = torch.rand(half, generator=self.rng) < self.condition_dropout
            cond = drop_conditions(self.target, cond, torch.cat([drop, drop]).to(device))
        pairs = (x0, cond, torch.cat([noise, noise]), torch.cat([t, t]))
        if self.real is not None:
            real_x0, real_cond = self.real.batch(device)
            real = (real_x0, real_cond, *self._noise_and_timesteps(len(real_x0), real_x0, device))
            return anchored_dpo_step(
                self.target, pairs, real, self.beta, self.sft_weight, self.real.weight, autocast
            )
        out = dpo_forward(self.target, *pairs, self.beta, self.sft_weight, autocast)
        return out.loss, out.metrics()

    def _noise_and_timesteps(
        self, n: int, x0: torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_timesteps = int(self.target.noise_scheduler.config.num_train_timesteps)
        noise = torch.randn((n, *x0.shape[1:]), generator=self.rng).to(device, x0.dtype)
        return noise, torch.randint(0, n_timesteps, (n,), generator=self.rng).to(device)


def real_anchor(
    target: DiffusionTarget,
    generator: Generator,
    inputs: AlignInputs,
    opts: DiffusionDPOOptions,
    rng: torch.Generator,
) -> tuple[RealAnchor | None, str]:
    """The real-image anchor ``real_weight`` asks for, and a note for the alignment's meta.

    Left at None, the anchor is on wherever the generator can put the real training images under
    its own conditions and off (with the reason in the note) where it cannot — SimGen's presence
    patterns, say — so the default aligns every generator. An explicit weight is a request: a
    generator that cannot meet it is refused clearly.
    """
    weight = AUTO_REAL_WEIGHT if opts.real_weight is None else opts.real_weight
    if weight == 0:
        return None, "off (real_weight 0)"
    try:
        real = real_samples(generator, inputs, option="real_weight")
    except PipelineError as err:
        if opts.real_weight is not None:
            raise
        return None, f"off: {err}"
    x0, cond = encode_samples(target, real, opts.encode_batch_size)
    anchor = RealAnchor(x0, cond, IndexSampler(len(real), opts.batch_size, rng), weight)
    return anchor, f"on: weight {weight:g}, {len(real)} real images"


def drop_conditions(
    target: DiffusionTarget, cond: dict[str, torch.Tensor], drop: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``cond`` with the rows where ``drop`` is true replaced by the target's unconditional input
    (a winner and its loser are dropped together, so the pair still compares like with like)."""
    empty = target.unconditional(cond)  # type: ignore[attr-defined]
    return {
        k: torch.where(drop.view(-1, *[1] * (v.dim() - 1)), empty[k], v) for k, v in cond.items()
    }


class DiffusionDPO(LoraAligner):
    """Diffusion-DPO on LoRA adapters (options: :class:`saadi_align.options.DiffusionDPOOptions`).

    If the generator's network already carries this aligner's adapter (iterative refinement with
    ``continue_from_previous``), training continues from those weights; the reference is always
    the base network (adapters off), which anchors every round to the same model.
    """

    kind = "diffusion-dpo"
    adapter_name = ADAPTER_NAME
    event = "dpo"

    def check_inputs(self, inputs: AlignInputs) -> None:
        pairs = inputs.pairs
        if len(pairs) == 0:
            stats = pairs.stats
            raise PipelineError(
                "no preference pairs to align on "
                f"({len(stats.get('conditions_without_winner', []))} condition(s) without a winner, "
                f"{len(stats.get('conditions_without_loser', []))} without a loser): lower the threshold h, "
                "enlarge the pool (pool.n_per_condition) or train the generator longer"
            )

    def prepare(
        self,
        target: DiffusionTarget,
        generator: Generator,
        inputs: AlignInputs,
        rng: torch.Generator,
    ) -> Batches:
        opts = self.options
        if opts.condition_dropout > 0 and not hasattr(target, "unconditional"):
            raise ConfigError(
                f"aligner option condition_dropout={opts.condition_dropout} needs a generator whose "
                "DiffusionTarget has unconditional(cond) (classifier-free guidance's input); "
                f"'{type(generator).__name__}' has none: set condition_dropout to 0"
            )
        cache = encode_pairs(target, inputs.pairs, opts.encode_batch_size)
        anchor, anchor_note = real_anchor(target, generator, inputs, opts, rng)
        batches = _PairBatches(
            target,
            cache,
            IndexSampler(len(cache), opts.batch_size, rng),
            rng,
            opts.beta,
            opts.sft_weight,
            opts.condition_dropout,
            anchor,
        )
        batches.meta |= {
            "real_anchor": anchor_note,
            "beta": opts.beta,
            "beta_convention": "Eq. 4 beta (= beta_dpo / 2 of the diffusers Diffusion-DPO example)",
        }
        return batches
