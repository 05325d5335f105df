"""Base training of an SSI model: masked latent inpainting with class prompts (paper Eq. 2).

Training examples are *views*: (training image, class present in its mask). A view masks that
class's region, noises the latent there only (Eq. 2 blend: ``x̃_t = x_t ⊙ m + x_0 ⊙ (1 − m)``),
and asks the UNet — given the region mask, the masked-image latent and the class prompt — for the
diffusion target inside the region; the loss is the MSE over the region
(:func:`saadi_ssi.inpaint.masked_mse`). Views are drawn class-balanced (each foreground class
equally often, whatever its frequency), plus a ``background_view_share`` of background views, so
a rare artery is learned as well as the ever-present gallbladder.

The set-up, optimisation step and tear-down are the ones every latent diffusion generator shares
(:class:`saadi_core.diffusion.latent_training.LatentTrainingLoop`: prepared UNet/optimiser,
backward, gradient clipping, autocast for bf16, EMA); each process draws its own views from its
own seeded generator. The prompt of a view is replaced by the empty prompt with probability
``prompt_dropout`` (for classifier-free guidance). With EMA on, the averaged weights are copied
into the modules at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saadi_core.diffusion.builders import random_flips, resize_images, resize_masks
from saadi_core.diffusion.latent import LatentDiffusionModel
from saadi_core.diffusion.latent_training import LatentTrainingLoop
from saadi_core.diffusion.targets import training_target
from saadi_core.interfaces import ProgressReporter
from saadi_ssi.inpaint import latent_mask, masked_mse, unet_input
from saadi_ssi.options import SSIOptions


def view_table(
    masks: np.ndarray, num_classes: int, background_share: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All views ``(image index, class id)`` with their sampling weights.

    Foreground classes share ``1 - background_share`` equally, and within a class every image
    that shows it is equally likely; background views (class 0) share ``background_share``.
    """
    present = np.stack(
        [(masks == k).reshape(len(masks), -1).any(axis=1) for k in range(num_classes)], axis=1
    )
    images, classes = np.nonzero(present)
    per_class = present.sum(axis=0)
    foreground = [k for k in range(1, num_classes) if per_class[k] > 0]
    weights = np.zeros(len(images), dtype=np.float64)
    for k in foreground:
        weights[classes == k] = (1.0 - background_share) / len(foreground) / per_class[k]
    if per_class[0] > 0:
        weights[classes == 0] = background_share / per_class[0]
    return (
        torch.from_numpy(images).long(),
        torch.from_numpy(classes).long(),
        torch.from_numpy(weights),
    )


def train_model(
    model: LatentDiffusionModel,
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
    loop = LatentTrainingLoop(model, prompts, options, accelerator, progress, name="ssi")
    device = accelerator.device
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    labels = torch.from_numpy(np.ascontiguousarray(masks)).long()
    view_images, view_classes, view_weights = view_table(
        masks, len(prompts), options.background_view_share
    )
    autoencoder = model.autoencoder
    scheduler = model.noise_scheduler
    rng = torch.Generator().manual_seed(options.seed + 1 + accelerator.process_index)
    num_timesteps = int(scheduler.config.num_train_timesteps)
    batch = options.batch_size

    for _ in loop.steps():
        pick = torch.multinomial(view_weights, batch, replacement=True, generator=rng)
        rows, classes = view_images[pick], view_classes[pick]
        x = pixels[rows].float().div(127.5).sub(1.0)
        label = labels[rows]
        if options.random_flip:
            x, label = random_flips(rng, x, label)
        drop = torch.rand(batch, generator=rng) < options.prompt_dropout
        prompt_rows = torch.where(drop, torch.full_like(classes, loop.uncond_index), classes).to(
            device
        )
        noise = torch.randn((batch, *model.latent_shape), generator=rng).to(device)
        t = torch.randint(0, num_timesteps, (batch,), generator=rng).to(device)

        x = resize_images(x.to(device), model.resolution)
        label = resize_masks(label.to(device), model.resolution)
        region = (label == classes.to(device)[:, None, None]).float()[:, None]
        with torch.no_grad():
            x0 = autoencoder.encode(x).float()
            masked_latent = autoencoder.encode(x * (1.0 - region)).float()
        mask = latent_mask(region, autoencoder.factor)
        x_t = scheduler.add_noise(x0, noise, t)
        target = training_target(scheduler, x0, noise, t)
        embeddings = loop.prompt_states()
        with accelerator.autocast():
            prediction = loop.unet(
                unet_input(x_t, mask, masked_latent, x0),
                t,
                encoder_hidden_states=embeddings[prompt_rows],
            ).sample
        loop.update(masked_mse(prediction, target, mask))
    return loop.finish()
