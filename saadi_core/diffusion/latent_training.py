"""The base-training scaffolding every latent diffusion generator shares (SSD, SSI).

What a generator's training loop does with a batch — which images, which noise, which network
input, which loss — is its own. Around it, the loops are the same and live in
:class:`LatentTrainingLoop`:

* **set-up** — autoencoder frozen, text encoder trained or frozen (``train_text_encoder``), UNet
  trained (with gradient checkpointing when asked); AdamW over the trained modules with a
  learning rate warmed up, then constant or decayed (``lr_scheduler``); everything handed to
  ``accelerate`` (so ``accelerate launch`` runs the same loop on several processes and
  autocasts for bf16); an EMA of the trained weights when ``ema_decay`` > 0; the class prompts
  and the empty prompt tokenized once (and encoded once when the text encoder is frozen);
* **each step** — backward, gradient clipping, optimiser and schedule steps, EMA update, the
  per-step history and a windowed loss log event every ``log_every`` steps;
* **tear-down** — the trained modules unwrapped back into the model, the EMA average copied
  into them (one set of sampling weights), every module frozen in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from saadi_core.diffusion.builders import ModuleEMA, tokenize_prompts
from saadi_core.diffusion.latent import LatentDiffusionModel
from saadi_core.diffusion.latent_options import LatentDiffusionOptions
from saadi_core.interfaces import ProgressReporter


class LatentTrainingLoop:
    """Set-up, optimisation step and tear-down of one base-training run of ``model``.

    Usage::

        loop = LatentTrainingLoop(model, prompts, options, accelerator, progress, name="ssd")
        for _ in loop.steps():
            ...  # a batch, its noise and target
            states = loop.prompt_states()  # (len(prompts) + 1, L, D); row loop.uncond_index is ""
            with accelerator.autocast():
                prediction = loop.unet(x_t, t, encoder_hidden_states=states[rows]).sample
            loop.update(loss)
        history = loop.finish()

    ``data`` (e.g. a ``DataLoader``) is prepared with the modules, so ``accelerate`` shards it
    across processes; the prepared object is :attr:`data`. ``name`` names the progress bar
    (``train {name}``) and the log events (``{name}.train``).
    """

    def __init__(
        self,
        model: LatentDiffusionModel,
        prompts: list[str],
        options: LatentDiffusionOptions,
        accelerator: Any,
        progress: ProgressReporter,
        *,
        name: str,
        data: Any | None = None,
    ) -> None:
        from diffusers.optimization import get_scheduler

        self.model, self.options, self.accelerator, self.progress, self.name = (
            model,
            options,
            accelerator,
            progress,
            name,
        )
        device = accelerator.device
        model.to(device)
        unet, text_encoder, autoencoder = model.unet, model.text_encoder, model.autoencoder
        self.train_text = options.train_text_encoder
        autoencoder.requires_grad_(False).eval()
        text_encoder.requires_grad_(self.train_text).train(self.train_text)
        unet.requires_grad_(True).train()
        if options.gradient_checkpointing:
            unet.enable_gradient_checkpointing()

        trainable = [unet, text_encoder] if self.train_text else [unet]
        self.parameters = [p for m in trainable for p in m.parameters()]
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=options.learning_rate, weight_decay=options.weight_decay
        )
        self.lr_scheduler = get_scheduler(
            options.lr_scheduler,
            self.optimizer,
            num_warmup_steps=options.lr_warmup_steps,
            num_training_steps=options.max_steps,
        )
        extra = [] if data is None else [data]
        prepared = accelerator.prepare(*trainable, self.optimizer, *extra, self.lr_scheduler)
        self.unet = prepared[0]
        self.text_encoder = prepared[1] if self.train_text else text_encoder
        self.optimizer, self.lr_scheduler = prepared[len(trainable)], prepared[-1]
        self.data = prepared[len(trainable) + 1] if data is not None else None
        self.ema = (
            ModuleEMA(trainable, options.ema_decay, options.ema_power)
            if options.ema_decay > 0
            else None
        )

        # the unique prompts (one per class + the empty one) are encoded once per step and indexed
        self.prompt_ids = tokenize_prompts(model.tokenizer, [*prompts, ""]).to(device)
        self.uncond_index = len(prompts)
        self.frozen_states: torch.Tensor | None = None
        if not self.train_text:
            with torch.no_grad():
                self.frozen_states = text_encoder(self.prompt_ids)[0].float()
        self.history: list[dict[str, float]] = []
        self._window: list[float] = []

    def steps(self) -> Iterable[int]:
        """``range(max_steps)``, tracked by the progress reporter on the main process."""
        steps = range(self.options.max_steps)
        if not self.accelerator.is_main_process:
            return steps
        return self.progress.track(steps, f"train {self.name}", total=self.options.max_steps)

    def prompt_states(self) -> torch.Tensor:
        """Text-encoder states of the class prompts and the empty prompt (last row), recomputed
        with gradients when the text encoder trains."""
        if self.frozen_states is not None:
            return self.frozen_states
        return self.text_encoder(self.prompt_ids)[0].float()

    def update(self, loss: torch.Tensor) -> None:
        """One optimisation step on ``loss``, recorded in :attr:`history` and logged."""
        self.accelerator.backward(loss)
        if self.accelerator.sync_gradients:
            self.accelerator.clip_grad_norm_(self.parameters, self.options.grad_clip)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step()
        value = float(loss.detach())
        step = len(self.history) + 1
        self.history.append(
            {"step": step, "loss": value, "lr": float(self.lr_scheduler.get_last_lr()[0])}
        )
        self._window.append(value)
        if step % self.options.log_every == 0 or step == self.options.max_steps:
            self.progress.log(f"{self.name}.train", step=step, loss=float(np.mean(self._window)))
            self._window = []

    def finish(self) -> list[dict[str, float]]:
        """Put the trained (EMA-averaged) weights into the model, freeze it; returns the history."""
        self.accelerator.wait_for_everyone()
        model = self.model
        model.unet = self.accelerator.unwrap_model(self.unet)
        model.text_encoder = self.accelerator.unwrap_model(self.text_encoder)
        if self.ema is not None:
            self.ema.copy_to()
        if self.options.gradient_checkpointing:
            model.unet.disable_gradient_checkpointing()
        for module in model.modules():
            module.requires_grad_(False).eval()
        return self.history
