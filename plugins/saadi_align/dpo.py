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
from saadi_core.diffusion.dpo import DPOLossOutput, diffusion_dpo_loss
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
    scheduler = target.noise_scheduler
    x_t = scheduler.add_noise(x0, noise, timesteps)
    goal = training_target(scheduler, x0, noise, timesteps)
    with autocast():
        ref = reference_prediction(target, x_t, timesteps, cond)
        pred = target.predict(x_t, timesteps, cond)
    return diffusion_dpo_loss(pred, ref, goal, beta=beta, sft_weight=sft_weight)


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

    def __post_init__(self) -> None:
        self.meta = {"n_pairs": len(self.cache), "n_encoded_samples": int(self.cache.x0.shape[0])}

    def step(
        self, device: torch.device, autocast: Callable[[], AbstractContextManager[Any]]
    ) -> StepOutput:
        x0, cond = self.cache.batch(self.sampler.next(), device)
        half = x0.shape[0] // 2
        n_timesteps = int(self.target.noise_scheduler.config.num_train_timesteps)
        noise = torch.randn((half, *x0.shape[1:]), generator=self.rng).to(device, x0.dtype)
        t = torch.randint(0, n_timesteps, (half,), generator=self.rng).to(device)
        if self.condition_dropout > 0:
            drop = torch.rand(half, generator=self.rng) < self.condition_dropout
            cond = drop_conditions(self.target, cond, torch.cat([drop, drop]).to(device))
        out = dpo_forward(
            self.target,
            x0,
            cond,
            torch.cat([noise, noise]),
            torch.cat([t, t]),
            self.beta,
            self.sft_weight,
            autocast,
        )
        return out.loss, out.metrics()


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
        batches = _PairBatches(
            target,
            cache,
            IndexSampler(len(cache), opts.batch_size, rng),
            rng,
            opts.beta,
            opts.sft_weight,
            opts.condition_dropout,
        )
        batches.meta |= {
            "beta": opts.beta,
            "beta_convention": "Eq. 4 beta (= beta_dpo / 2 of the diffusers Diffusion-DPO example)",
        }
        return batches
