"""``diffusion-kto``: Diffusion-KTO (Li et al. 2024) on LoRA adapters.

Learns from per-sample good/bad labels — exactly SAADi's threshold h on the selector's scores —
without pairing: every pool sample counts, so a condition with only winners or only losers still
teaches something. The loss (:func:`saadi_align.losses.diffusion_kto_loss`) needs the frozen base
as reference, taken like Diffusion-DPO's: the same network with its adapters off, under
``inference_mode``. Validation, selection and saving: :mod:`saadi_align.training`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from saadi_align.dpo import reference_prediction
from saadi_align.labelled import labelled_pool, require, threshold_of
from saadi_align.losses import diffusion_kto_loss
from saadi_align.training import Batches, IndexSampler, LoraAligner, StepOutput, encode_samples
from saadi_core.diffusion.targets import training_target
from saadi_core.interfaces import AlignInputs, DiffusionTarget, Generator

ADAPTER_NAME = "saadi_kto"


@dataclass
class _KTOBatches(Batches):
    target: DiffusionTarget
    x0: torch.Tensor
    cond: dict[str, torch.Tensor]
    labels: torch.Tensor
    samplers: list[tuple[IndexSampler, torch.Tensor]]  # (sampler, rows it indexes)
    rng: torch.Generator
    beta: float
    weights: tuple[float, float]

    def step(
        self, device: torch.device, autocast: Callable[[], AbstractContextManager[Any]]
    ) -> StepOutput:
        rows = torch.cat([pool[sampler.next()] for sampler, pool in self.samplers])
        x0 = self.x0[rows].to(device)
        cond = {k: v[rows].to(device) for k, v in self.cond.items()}
        scheduler = self.target.noise_scheduler
        noise = torch.randn(x0.shape, generator=self.rng).to(device, x0.dtype)
        t = torch.randint(
            0, int(scheduler.config.num_train_timesteps), (x0.shape[0],), generator=self.rng
        ).to(device)
        x_t = scheduler.add_noise(x0, noise, t)
        with autocast():
            ref = reference_prediction(self.target, x_t, t, cond)
            pred = self.target.predict(x_t, t, cond)
        out = diffusion_kto_loss(
            pred,
            ref,
            training_target(scheduler, x0, noise, t),
            self.labels[rows],
            self.beta,
            *self.weights,
        )
        return out.loss, out.metrics()


class DiffusionKTO(LoraAligner):
    """Diffusion-KTO (options: :class:`saadi_align.options.DiffusionKTOOptions`)."""

    kind = "diffusion-kto"
    adapter_name = ADAPTER_NAME
    event = "kto"

    def check_inputs(self, inputs: AlignInputs) -> None:
        samples, _ = labelled_pool(inputs, threshold_of(inputs, self.options.threshold))
        require(samples, "scored sample", self.kind)

    def prepare(
        self,
        target: DiffusionTarget,
        generator: Generator,
        inputs: AlignInputs,
        rng: torch.Generator,
    ) -> Batches:
        opts = self.options
        h = threshold_of(inputs, opts.threshold)
        samples, labels = labelled_pool(inputs, h)
        x0, cond = encode_samples(target, samples, opts.encode_batch_size)
        label_tensor = torch.tensor(labels, dtype=torch.bool)
        good, bad = torch.nonzero(label_tensor).flatten(), torch.nonzero(~label_tensor).flatten()
        if opts.balance and good.numel() and bad.numel():
            n_good = opts.batch_size // 2 or 1
            samplers = [(IndexSampler(good.numel(), n_good, rng), good)]
            if opts.batch_size - n_good:
                samplers.append((IndexSampler(bad.numel(), opts.batch_size - n_good, rng), bad))
        else:
            everyone = torch.arange(len(samples))
            samplers = [(IndexSampler(len(samples), opts.batch_size, rng), everyone)]
        batches = _KTOBatches(
            target=target,
            x0=x0,
            cond=cond,
            labels=label_tensor,
            samplers=samplers,
            rng=rng,
            beta=opts.beta,
            weights=(opts.desirable_weight, opts.undesirable_weight),
        )
        batches.meta = {
            "threshold": h,
            "n_desirable": int(good.numel()),
            "n_undesirable": int(bad.numel()),
            "n_encoded_samples": int(x0.shape[0]),
            "beta": opts.beta,
            "balanced": bool(opts.balance and good.numel() and bad.numel()),
        }
        return batches
