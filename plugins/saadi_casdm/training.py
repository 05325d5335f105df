"""Base training of CASDM's image network: class-aware MSE + class-aware self-perceptual loss.

Each step draws training (image, mask) pairs (flipped together when ``random_flip``), noises the
image (its pixel-unshuffled cells) at a random timestep, and asks the
:class:`~saadi_casdm.network.SemanticUNet` — which sees the mask only in its SPADE decoder — for
the scheduler's target. The loss is :func:`~saadi_casdm.losses.class_aware_mse` with the Eq. 7
weight map of each mask (plain MSE with ``class_aware_mse: false``) plus ``perceptual_weight`` ×
:func:`~saadi_casdm.losses.class_aware_perceptual_loss`: the predicted ``x̂_0`` re-noised with the
step's noise, run through the network's own encoder (detached weights), against ``x_t``'s features.

Runs through an ``accelerate.Accelerator`` (the run's under ``accelerate launch``, else a
single-process one), AdamW with a warm-up then constant or cosine learning rate, gradient
clipping, and an EMA of the weights that is copied into the network at the end (one set of
sampling weights).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saadi_casdm.losses import (
    class_aware_mse,
    class_aware_perceptual_loss,
    class_weight_map,
    perceptual_features,
    predicted_x0,
)
from saadi_casdm.model import CASDMModel
from saadi_casdm.options import CASDMOptions
from saadi_core.diffusion.builders import ModuleEMA, random_flips, resize_images, resize_masks
from saadi_core.diffusion.targets import training_target
from saadi_core.interfaces import ProgressReporter


def train_network(
    model: CASDMModel,
    images: np.ndarray,
    masks: np.ndarray,
    options: CASDMOptions,
    accelerator: Any,
    progress: ProgressReporter,
) -> list[dict[str, float]]:
    """Train ``model.network`` in place on ``images`` (``uint8 (N, H, W, 3)``) and ``masks``
    (``int64 (N, H, W)``). Returns the per-step history (``step``, ``loss``, ``mse``,
    ``perceptual``, ``lr``)."""
    from diffusers.optimization import get_scheduler

    device = accelerator.device
    model.to(device)
    network = model.network.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay
    )
    schedule = "cosine" if options.lr_schedule == "cosine" else "constant_with_warmup"
    lr_scheduler = get_scheduler(
        schedule,
        optimizer,
        num_warmup_steps=options.lr_warmup_steps,
        num_training_steps=max(options.max_steps, 1),
    )
    prepared, optimizer, lr_scheduler = accelerator.prepare(network, optimizer, lr_scheduler)
    ema = (
        ModuleEMA([network], options.ema_decay, options.ema_power)
        if options.ema_decay > 0
        else None
    )

    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    labels_all = torch.from_numpy(np.ascontiguousarray(masks)).long()
    scheduler = model.noise_scheduler
    num_classes = model.num_classes
    rng = torch.Generator().manual_seed(options.seed + 1 + accelerator.process_index)
    num_timesteps = int(scheduler.config.num_train_timesteps)
    batch = options.batch_size
    steps: Any = range(options.max_steps)
    if accelerator.is_main_process:
        steps = progress.track(steps, "train casdm", total=options.max_steps)

    history: list[dict[str, float]] = []
    window: list[float] = []
    for step in steps:
        rows = torch.randint(0, len(pixels), (batch,), generator=rng)
        x = pixels[rows].float().div(127.5).sub(1.0)
        labels = labels_all[rows]
        if options.random_flip:
            x, labels = random_flips(rng, x, labels)
        noise = torch.randn((batch, *model.latent_shape), generator=rng).to(device)
        t = torch.randint(0, num_timesteps, (batch,), generator=rng).to(device)
        labels = resize_masks(labels.to(device), model.resolution)
        x0 = model.autoencoder.encode(resize_images(x.to(device), model.resolution))
        x_t = scheduler.add_noise(x0, noise, t)
        weights = (
            class_weight_map(labels, num_classes)
            if options.class_aware_mse
            else torch.ones(labels.shape, device=device)
        )
        with accelerator.autocast():
            prediction = prepared(x_t, t, labels)
        mse = class_aware_mse(prediction, training_target(scheduler, x0, noise, t), weights)
        loss = mse
        record = {"step": step + 1, "mse": float(mse.detach())}
        if options.perceptual_weight > 0:
            renoised = scheduler.add_noise(
                predicted_x0(scheduler, x_t, prediction.float(), t), noise, t
            )
            with torch.no_grad(), accelerator.autocast():
                reference = network.encoder_features(x_t, t)
            with accelerator.autocast():
                perceptual = class_aware_perceptual_loss(
                    lambda s, t=t: perceptual_features(network, s, t), reference, renoised, weights
                )
            loss = loss + options.perceptual_weight * perceptual
            record["perceptual"] = float(perceptual.detach())
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(network.parameters(), options.grad_clip)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step()
        value = float(loss.detach())
        history.append({**record, "loss": value, "lr": float(lr_scheduler.get_last_lr()[0])})
        window.append(value)
        if (step + 1) % options.log_every == 0 or step + 1 == options.max_steps:
            progress.log("casdm.train", step=step + 1, loss=float(np.mean(window)))
            window = []

    accelerator.wait_for_everyone()
    model.network = accelerator.unwrap_model(prepared)
    if ema is not None:
        ema.copy_to()
    model.freeze()
    return history
