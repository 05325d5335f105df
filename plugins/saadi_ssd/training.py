"""Base training of an SSD model: the latent-diffusion loss with class prompts (paper Eq. 1).

One loop for both profiles and for one or many processes: it is written against an
``accelerate.Accelerator`` (prepared UNet/optimiser/data, ``accelerator.backward``, gradient
clipping, autocast for bf16), so ``accelerate launch`` shards the data with no code change.

Per step: images -> (optional flip) -> resize to the model resolution -> deterministic
``autoencoder.encode`` -> ``x_t = add_noise(x0, ε, t)``; the prompt of each image is its class
prompt, replaced by the empty prompt with probability ``prompt_dropout`` (this teaches the
unconditional prediction classifier-free guidance needs); the loss is the MSE between the UNet
output and :func:`saadi_core.diffusion.targets.training_target` — the same target Diffusion-DPO
uses later. With EMA on, the averaged weights are copied into the modules at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from saadi_core.diffusion.builders import ModuleEMA, tokenize_prompts
from saadi_core.diffusion.targets import training_target
from saadi_core.interfaces import ProgressReporter
from saadi_ssd.components import SSDModel
from saadi_ssd.options import SSDOptions


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of ``(N, C, H, W)`` to ``size x size`` (no-op when equal)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _batches(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def train_model(
    model: SSDModel,
    images: np.ndarray,
    labels: np.ndarray,
    prompts: list[str],
    options: SSDOptions,
    accelerator: Any,
    progress: ProgressReporter,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``images`` (``uint8 (N, H, W, 3)``) labelled with class ids
    indexing ``prompts``; returns the per-step history (``step``, ``loss``, ``lr``)."""
    from diffusers.optimization import get_scheduler
    from torch.utils.data import DataLoader, TensorDataset

    device = accelerator.device
    model.to(device)
    unet, text_encoder, autoencoder = model.unet, model.text_encoder, model.autoencoder
    train_text = options.train_text_encoder
    autoencoder.requires_grad_(False).eval()
    text_encoder.requires_grad_(train_text).train(train_text)
    unet.requires_grad_(True).train()
    if options.gradient_checkpointing:
        unet.enable_gradient_checkpointing()

    trainable = [unet, text_encoder] if train_text else [unet]
    optimizer = torch.optim.AdamW(
        [p for m in trainable for p in m.parameters()], lr=options.learning_rate, weight_decay=options.weight_decay
    )
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=options.lr_warmup_steps)
    data = TensorDataset(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), torch.from_numpy(labels))
    loader = DataLoader(
        data,
        batch_size=min(options.batch_size, len(data)),
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(options.seed),
    )
    prepared = accelerator.prepare(*trainable, optimizer, loader, lr_scheduler)
    unet = prepared[0]
    text_encoder = prepared[1] if train_text else text_encoder
    optimizer, loader, lr_scheduler = prepared[-3:]
    ema = ModuleEMA(trainable, options.ema_decay, options.ema_power) if options.ema_decay > 0 else None

    # the unique prompts (one per class + the empty one) are encoded once per step and indexed
    prompt_ids = tokenize_prompts(model.tokenizer, [*prompts, ""]).to(device)
    uncond_index = len(prompts)
    if not train_text:
        with torch.no_grad():
            frozen_embeddings = text_encoder(prompt_ids)[0].float()
    scheduler = model.noise_scheduler
    rng = torch.Generator(device=device).manual_seed(options.seed + 1 + accelerator.process_index)
    num_timesteps = int(scheduler.config.num_train_timesteps)

    history: list[dict[str, float]] = []
    steps = range(options.max_steps)
    iterator = progress.track(steps, "train ssd", total=options.max_steps) if accelerator.is_main_process else steps
    batches = _batches(loader)
    window: list[float] = []
    for step in iterator:
        pixels, class_ids = next(batches)
        x = pixels.to(device).float().div(127.5).sub(1.0)
        n = x.shape[0]
        if options.random_flip:
            flip = torch.rand(n, generator=rng, device=device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = resize_images(x, model.resolution)
        with torch.no_grad():
            x0 = autoencoder.encode(x).float()
        drop = torch.rand(n, generator=rng, device=device) < options.prompt_dropout
        rows = torch.where(drop, torch.full_like(class_ids, uncond_index), class_ids.to(device))
        embeddings = text_encoder(prompt_ids)[0].float() if train_text else frozen_embeddings
        noise = torch.randn(x0.shape, generator=rng, device=device)
        t = torch.randint(0, num_timesteps, (n,), generator=rng, device=device)
        x_t = scheduler.add_noise(x0, noise, t)
        target = training_target(scheduler, x0, noise, t)
        with accelerator.autocast():
            prediction = unet(x_t, t, encoder_hidden_states=embeddings[rows]).sample
        loss = F.mse_loss(prediction.float(), target.float())
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_([p for m in trainable for p in m.parameters()], options.grad_clip)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step()
        value = float(loss.detach())
        history.append({"step": step + 1, "loss": value, "lr": float(lr_scheduler.get_last_lr()[0])})
        window.append(value)
        if (step + 1) % options.log_every == 0 or step + 1 == options.max_steps:
            progress.log("ssd.train", step=step + 1, loss=float(np.mean(window)))
            window = []

    accelerator.wait_for_everyone()
    model.unet = accelerator.unwrap_model(unet)
    model.text_encoder = accelerator.unwrap_model(text_encoder)
    if ema is not None:
        ema.copy_to()
    if options.gradient_checkpointing:
        model.unet.disable_gradient_checkpointing()
    for module in model.modules():
        module.requires_grad_(False).eval()
    return history
