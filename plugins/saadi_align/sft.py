"""``sft-winners``: rejection-sampling fine-tuning (RAFT-style) on LoRA adapters.

The simplest alignment that uses the selector: keep the pool samples it scores ≥ h and fine-tune
the generator on them with its plain diffusion loss (optionally mixing real training images into
every batch, which anchors the model to the data). No reference network, no pairs — the baseline a
preference method has to beat. Validation, checkpoint selection and saving are those of every
LoRA aligner (:mod:`saadi_align.training`).

``train-longer`` (:class:`TrainLonger`) is the same fine-tuning with the selector taken out: the
adapter, steps and validation of an aligner, trained on the real images only. It is the control
every aligner's gain is measured against: on toy-cls it moved the oracle pass as far as DPO did,
because the base generator was not trained to convergence (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from saadi_align.labelled import labelled_pool, real_samples, require, threshold_of
from saadi_align.losses import sft_loss
from saadi_align.training import Batches, IndexSampler, LoraAligner, StepOutput, encode_samples
from saadi_core.diffusion.targets import training_target
from saadi_core.interfaces import AlignInputs, DiffusionTarget, Generator

ADAPTER_NAME = "saadi_sft"


@dataclass
class _SFTBatches(Batches):
    target: DiffusionTarget
    x0: torch.Tensor
    cond: dict[str, torch.Tensor]
    winners: IndexSampler
    real: IndexSampler | None
    n_winners: int
    rng: torch.Generator

    def step(
        self, device: torch.device, autocast: Callable[[], AbstractContextManager[Any]]
    ) -> StepOutput:
        rows = self.winners.next()
        if self.real is not None:
            rows = torch.cat([rows, self.real.next() + self.n_winners])
        x0 = self.x0[rows].to(device)
        cond = {k: v[rows].to(device) for k, v in self.cond.items()}
        scheduler = self.target.noise_scheduler
        noise = torch.randn(x0.shape, generator=self.rng).to(device, x0.dtype)
        t = torch.randint(
            0, int(scheduler.config.num_train_timesteps), (x0.shape[0],), generator=self.rng
        ).to(device)
        x_t = scheduler.add_noise(x0, noise, t)
        with autocast():
            pred = self.target.predict(x_t, t, cond)
        loss, metrics = sft_loss(pred, training_target(scheduler, x0, noise, t))
        return loss, metrics


class SFTWinners(LoraAligner):
    """Fine-tuning on the selector's winners (options: :class:`saadi_align.options.SFTWinnersOptions`)."""

    kind = "sft-winners"
    adapter_name = ADAPTER_NAME
    event = "sft"
    #: what an error about the real images names as the option that asked for them
    real_option = "real_fraction"

    def real_per_batch(self) -> int:
        """Rows of each batch drawn from the real training images; the rest are winners."""
        return round(self.options.batch_size * self.options.real_fraction)

    def check_inputs(self, inputs: AlignInputs) -> None:
        if self.real_per_batch() == self.options.batch_size:  # no winner is trained on
            return
        h = threshold_of(inputs, self.options.threshold)
        samples, labels = labelled_pool(inputs, h)
        require(
            [s for s, good in zip(samples, labels) if good], f"sample scoring ≥ h={h}", self.kind
        )

    def prepare(
        self,
        target: DiffusionTarget,
        generator: Generator,
        inputs: AlignInputs,
        rng: torch.Generator,
    ) -> Batches:
        opts = self.options
        n_real = self.real_per_batch()
        meta: dict[str, Any] = {}
        winners: list[Any] = []
        if n_real < opts.batch_size:
            h = threshold_of(inputs, opts.threshold)
            samples, labels = labelled_pool(inputs, h)
            winners = [s for s, good in zip(samples, labels) if good]
            meta = {"threshold": h, "n_pool": len(samples)}
        real = real_samples(generator, inputs, self.real_option) if n_real else []
        x0, cond = encode_samples(target, [*winners, *real], opts.encode_batch_size)
        batches = _SFTBatches(
            target=target,
            x0=x0,
            cond=cond,
            winners=IndexSampler(len(winners), opts.batch_size - n_real, rng),
            real=IndexSampler(len(real), n_real, rng) if n_real else None,
            n_winners=len(winners),
            rng=rng,
        )
        batches.meta = meta | {
            "n_winners": len(winners),
            "n_real": len(real),
            "real_per_batch": n_real,
            "n_encoded_samples": int(x0.shape[0]),
        }
        return batches


class TrainLonger(SFTWinners):
    """The control: the LoRA fine-tuning of an aligner on the real training images alone, no
    selector and no pool (options: :class:`saadi_align.options.TrainLongerOptions`).

    What an aligner adds beyond this arm is what its preference signal adds; what this arm gains
    over the base is what more training on the same real data gives anyway."""

    kind = "train-longer"
    event = "train_longer"
    real_option = "train-longer"

    def real_per_batch(self) -> int:
        return self.options.batch_size
