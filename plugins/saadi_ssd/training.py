"""Base training of an SSD model: the latent-diffusion loss with class prompts (paper Eq. 1).

One loop for both profiles and for one or many processes: the set-up, optimisation step and
tear-down it shares with the other latent diffusion generators
(:class:`saadi_core.diffusion.latent_training.LatentTrainingLoop`) are written against an
``accelerate.Accelerator``, and the data loader is prepared with the modules, so ``accelerate
launch`` shards the data with no code change.

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

from saadi_core.diffusion.builders import resize_images
from saadi_core.diffusion.latent import LatentDiffusionModel
from saadi_core.diffusion.latent_training import LatentTrainingLoop
from saadi_core.diffusion.targets import training_target
from saadi_core.interfaces import ProgressReporter
from saadi_ssd.options import SSDOptions


def _batches(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def training_loader(images: np.ndarray, labels: np.ndarray, options: SSDOptions) -> Any:
    """The base-training batches: shuffled in the data's class proportions, or with
    ``class_balanced`` every class drawn equally often (with replacement), so a class with few
    images is not left to few steps — on toy-cls the rarest classes are the ones the base never
    learns to draw."""
    from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

    data = TensorDataset(
        torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), torch.from_numpy(labels)
    )
    order = torch.Generator().manual_seed(options.seed)
    sampler = None
    if options.class_balanced:
        weights = torch.from_numpy(1.0 / np.bincount(labels)[labels])
        sampler = WeightedRandomSampler(weights, len(data), replacement=True, generator=order)
    return DataLoader(
        data,
        batch_size=min(options.batch_size, len(data)),
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        generator=order if sampler is None else None,
    )


def train_model(
    model: LatentDiffusionModel,
    images: np.ndarray,
    labels: np.ndarray,
    prompts: list[str],
    options: SSDOptions,
    accelerator: Any,
    progress: ProgressReporter,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``images`` (``uint8 (N, H, W, 3)``) labelled with class ids
    indexing ``prompts``; returns the per-step history (``step``, ``loss``, ``lr``)."""
    loader = training_loader(images, labels, options)
    loop = LatentTrainingLoop(
        model, prompts, options, accelerator, progress, name="ssd", data=loader
    )
    device = accelerator.device
    scheduler = model.noise_scheduler
    rng = torch.Generator(device=device).manual_seed(options.seed + 1 + accelerator.process_index)
    num_timesteps = int(scheduler.config.num_train_timesteps)

    batches = _batches(loop.data)
    for _ in loop.steps():
        pixels, class_ids = next(batches)
        x = pixels.to(device).float().div(127.5).sub(1.0)
        n = x.shape[0]
        if options.random_flip:
            flip = torch.rand(n, generator=rng, device=device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = resize_images(x, model.resolution)
        with torch.no_grad():
            x0 = model.autoencoder.encode(x).float()
        drop = torch.rand(n, generator=rng, device=device) < options.prompt_dropout
        rows = torch.where(
            drop, torch.full_like(class_ids, loop.uncond_index), class_ids.to(device)
        )
        embeddings = loop.prompt_states()
        noise = torch.randn(x0.shape, generator=rng, device=device)
        t = torch.randint(0, num_timesteps, (n,), generator=rng, device=device)
        x_t = scheduler.add_noise(x0, noise, t)
        target = training_target(scheduler, x0, noise, t)
        with accelerator.autocast():
            prediction = loop.unet(x_t, t, encoder_hidden_states=embeddings[rows]).sample
        loop.update(F.mse_loss(prediction.float(), target.float()))
    return loop.finish()
