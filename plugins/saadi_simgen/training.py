"""Base training of a ``simgen`` network: plain DDPM regression on the joint image + mask tensor.

Each step draws a batch of training pairs (uniformly, with replacement, from the options' seed
and the process index), flips image and mask together, maps them into the joint space, noises
all ``6f²`` channels with one noise draw and one timestep per pair, and regresses the scheduler's
target (:func:`saadi_core.diffusion.targets.training_target`, the same one Diffusion-DPO uses)
with an unweighted MSE — SimGen's loss: image and mask errors count alike, so neither is learned
at the other's expense. With class-presence conditioning each pair carries its pattern's label,
replaced by the null label with probability ``condition_dropout``.

Around the step: AdamW (weight decay 0 by default = Adam, as the paper) with a
constant-after-warm-up learning rate, gradient clipping, an EMA of the weights (copied into the
network at the end, so there is one set of sampling weights), all through ``accelerate`` so a
multi-process launch runs the same loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saadi_core.diffusion.builders import ModuleEMA, random_flips
from saadi_core.diffusion.targets import training_target
from saadi_core.interfaces import ProgressReporter
from saadi_simgen.network import JointSpace
from saadi_simgen.options import SimGenOptions


def train_unet(
    unet: Any,
    scheduler: Any,
    space: JointSpace,
    images: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray | None,
    options: SimGenOptions,
    accelerator: Any,
    progress: ProgressReporter,
) -> tuple[Any, list[dict[str, float]]]:
    """Train ``unet`` on ``images`` (``uint8 (N, H, W, 3)``) and ``masks`` (``int64 (N, H, W)``);
    ``labels`` are the pairs' pattern rows (class-presence; the null label is the last embedding
    row) or ``None``. Returns the trained, frozen network (EMA weights) and the per-step history."""
    from diffusers.optimization import get_scheduler

    device = accelerator.device
    unet.to(device).requires_grad_(True).train()
    params = list(unet.parameters())
    optimizer = torch.optim.AdamW(
        params, lr=options.learning_rate, weight_decay=options.weight_decay
    )
    lr_schedule = get_scheduler(
        "constant_with_warmup", optimizer, num_warmup_steps=options.lr_warmup_steps
    )
    model, optimizer, lr_schedule = accelerator.prepare(unet, optimizer, lr_schedule)
    ema = ModuleEMA([unet], options.ema_decay, options.ema_power) if options.ema_decay > 0 else None

    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    label_maps = torch.from_numpy(np.ascontiguousarray(masks)).long()
    pattern_rows = None if labels is None else torch.from_numpy(labels).long()
    null_label = None if labels is None else int(unet.config.num_class_embeds) - 1
    rng = torch.Generator().manual_seed(options.seed + 1 + accelerator.process_index)
    n_timesteps = int(scheduler.config.num_train_timesteps)
    batch = options.batch_size
    history: list[dict[str, float]] = []
    window: list[float] = []

    steps = range(options.max_steps)
    if accelerator.is_main_process:
        steps = progress.track(steps, "train simgen", total=options.max_steps)
    for _ in steps:
        rows = torch.randint(0, len(pixels), (batch,), generator=rng)
        x = pixels[rows].float().div(127.5).sub(1.0)
        m = label_maps[rows]
        if options.random_flip:
            x, m = random_flips(rng, x, m)
        noise = torch.randn((batch, *space.shape), generator=rng).to(device)
        t = torch.randint(0, n_timesteps, (batch,), generator=rng).to(device)
        kwargs: dict[str, torch.Tensor] = {}
        if pattern_rows is not None:
            drop = torch.rand(batch, generator=rng) < options.condition_dropout
            kwargs["class_labels"] = torch.where(
                drop, torch.full((batch,), null_label), pattern_rows[rows]
            ).to(device)
        x0 = space.encode(x.to(device), m.to(device))
        x_t = scheduler.add_noise(x0, noise, t)
        with accelerator.autocast():
            prediction = model(x_t, t, **kwargs).sample
        loss = torch.nn.functional.mse_loss(
            prediction.float(), training_target(scheduler, x0, noise, t)
        )
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(params, options.grad_clip)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step()
        value = float(loss.detach())
        history.append(
            {"step": len(history) + 1, "loss": value, "lr": float(lr_schedule.get_last_lr()[0])}
        )
        window.append(value)
        if len(history) % options.log_every == 0 or len(history) == options.max_steps:
            progress.log("simgen.train", step=len(history), loss=float(np.mean(window)))
            window = []

    accelerator.wait_for_everyone()
    unet = accelerator.unwrap_model(model)
    if ema is not None:
        ema.copy_to()
    unet.requires_grad_(False).eval()
    return unet, history
