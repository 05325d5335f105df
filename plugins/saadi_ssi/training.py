"""Base training of an SSI model: masked latent inpainting with class prompts (paper Eq. 2).

Training examples are *views*: (training image, class present in its mask). A view masks that
class's region, noises the latent there only (Eq. 2 blend: ``x̃_t = x_t ⊙ m + x_0 ⊙ (1 − m)``),
and asks the UNet — given the region mask, the masked-image latent and the class prompt — for the
diffusion target inside the region; the loss is the MSE over the region
(:func:`saadi_ssi.inpaint.masked_mse`). Views are drawn class-balanced (each foreground class
equally often, whatever its frequency), plus a ``background_view_share`` of background views, so
a rare artery is learned as well as the ever-present gallbladder.

The loop is written against an ``accelerate.Accelerator`` (prepared UNet/optimiser, backward,
gradient clipping, autocast for bf16) like the SSD loop; each process draws its own views from
its own seeded generator. The prompt of a view is replaced by the empty prompt with probability
``prompt_dropout`` (for classifier-free guidance). With EMA on, the averaged weights are copied
into the modules at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from saadi_core.diffusion.builders import ModuleEMA, tokenize_prompts
from saadi_core.diffusion.targets import training_target
from saadi_core.interfaces import ProgressReporter
from saadi_ssi.components import SSIModel
from saadi_ssi.inpaint import latent_mask, masked_mse, unet_input
from saadi_ssi.options import SSIOptions


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_images(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of ``(N, C, H, W)`` to ``size`` (an int means square; no-op
    when equal)."""
    hw = _hw(size)
    if tuple(images.shape[-2:]) == hw:
        return images
    return F.interpolate(images, size=hw, mode="bilinear", antialias=True, align_corners=False)


def resize_masks(masks: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of class-id masks ``(N, H, W)`` to ``size`` (no-op when equal)."""
    hw = _hw(size)
    if tuple(masks.shape[-2:]) == hw:
        return masks
    return F.interpolate(masks[:, None].float(), size=hw, mode="nearest")[:, 0].long()


def view_table(masks: np.ndarray, num_classes: int, background_share: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All views ``(image index, class id)`` with their sampling weights.

    Foreground classes share ``1 - background_share`` equally, and within a class every image
    that shows it is equally likely; background views (class 0) share ``background_share``.
    """
    present = np.stack([(masks == k).reshape(len(masks), -1).any(axis=1) for k in range(num_classes)], axis=1)
    images, classes = np.nonzero(present)
    per_class = present.sum(axis=0)
    foreground = [k for k in range(1, num_classes) if per_class[k] > 0]
    weights = np.zeros(len(images), dtype=np.float64)
    for k in foreground:
        weights[classes == k] = (1.0 - background_share) / len(foreground) / per_class[k]
    if per_class[0] > 0:
        weights[classes == 0] = background_share / per_class[0]
    return torch.from_numpy(images).long(), torch.from_numpy(classes).long(), torch.from_numpy(weights)


def train_model(
    model: SSIModel,
    images: np.ndarray,
    masks: np.ndarray,
    prompts: list[str],
    options: SSIOptions,
    accelerator: Any,
    progress: ProgressReporter,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``images`` (``uint8 (N, H, W, 3)``) and their ``masks``
    (``int64 (N, H, W)``); ``prompts[k]`` is class ``k``'s prompt. Returns the per-step history
    (``step``, ``loss``, ``lr``)."""
    from diffusers.optimization import get_scheduler

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
    prepared = accelerator.prepare(*trainable, optimizer, lr_scheduler)
    unet = prepared[0]
    text_encoder = prepared[1] if train_text else text_encoder
    optimizer, lr_scheduler = prepared[-2:]
    ema = ModuleEMA(trainable, options.ema_decay, options.ema_power) if options.ema_decay > 0 else None

    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    labels = torch.from_numpy(np.ascontiguousarray(masks)).long()
    view_images, view_classes, view_weights = view_table(masks, len(prompts), options.background_view_share)
    # the class prompts + the empty one are encoded once per step and indexed
    prompt_ids = tokenize_prompts(model.tokenizer, [*prompts, ""]).to(device)
    uncond_index = len(prompts)
    if not train_text:
        with torch.no_grad():
            frozen_embeddings = text_encoder(prompt_ids)[0].float()
    scheduler = model.noise_scheduler
    factor = autoencoder.factor
    rng = torch.Generator().manual_seed(options.seed + 1 + accelerator.process_index)
    num_timesteps = int(scheduler.config.num_train_timesteps)
    batch = options.batch_size

    history: list[dict[str, float]] = []
    steps = range(options.max_steps)
    iterator = progress.track(steps, "train ssi", total=options.max_steps) if accelerator.is_main_process else steps
    window: list[float] = []
    for step in iterator:
        pick = torch.multinomial(view_weights, batch, replacement=True, generator=rng)
        rows, classes = view_images[pick], view_classes[pick]
        x = pixels[rows].float().div(127.5).sub(1.0)
        label = labels[rows]
        if options.random_flip:
            for dim, flip in ((-1, torch.rand(batch, generator=rng) < 0.5), (-2, torch.rand(batch, generator=rng) < 0.5)):
                x = torch.where(flip[:, None, None, None], x.flip(dim), x)
                label = torch.where(flip[:, None, None], label.flip(dim), label)
        drop = torch.rand(batch, generator=rng) < options.prompt_dropout
        prompt_rows = torch.where(drop, torch.full_like(classes, uncond_index), classes).to(device)
        noise = torch.randn((batch, *model.latent_shape), generator=rng).to(device)
        t = torch.randint(0, num_timesteps, (batch,), generator=rng).to(device)

        x = resize_images(x.to(device), model.resolution)
        label = resize_masks(label.to(device), model.resolution)
        region = (label == classes.to(device)[:, None, None]).float()[:, None]
        with torch.no_grad():
            x0 = autoencoder.encode(x).float()
            masked_latent = autoencoder.encode(x * (1.0 - region)).float()
        mask = latent_mask(region, factor)
        x_t = scheduler.add_noise(x0, noise, t)
        target = training_target(scheduler, x0, noise, t)
        embeddings = text_encoder(prompt_ids)[0].float() if train_text else frozen_embeddings
        with accelerator.autocast():
            prediction = unet(unet_input(x_t, mask, masked_latent, x0), t, encoder_hidden_states=embeddings[prompt_rows]).sample
        loss = masked_mse(prediction, target, mask)
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
            progress.log("ssi.train", step=step + 1, loss=float(np.mean(window)))
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
