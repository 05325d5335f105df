"""Test helpers shared by the latent diffusion generators' tests (``ssd``, ``ssi``).

Small models on 16 px images, a miniature Stable Diffusion directory written locally (no
download), and the probes the tests of both generators use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saadi_core.data.dataset import Dataset, Split
from saadi_core.diffusion.miniature import SDShape, save_stable_diffusion

SIZE = 16

#: a UNet of a few 10k parameters that trains in seconds (each test module adds its own keys)
LATENT_SMALL: dict[str, Any] = {
    "seed": 3,
    "pretrained": None,  # built from config (the embedded weights are for the tiny architecture)
    "resolution": None,  # the test images' own size
    "unshuffle_factor": 2,
    "block_out_channels": [16, 32],
    "unet_attention": [False, True],
    "norm_num_groups": 8,
    "attention_head_dim": 8,
    "text_hidden_size": 16,
    "text_heads": 2,
    "text_layers": 1,
    "max_steps": 40,
    "batch_size": 8,
    "learning_rate": 3e-3,
    "lr_warmup_steps": 0,
    "sample_batch_size": 4,
}


def toy_classification(n: int = 24, task: str = "classification") -> Dataset:
    """Three classes on a pink background: a filled square, a hollow square, a horizontal bar."""
    rng = np.random.default_rng(0)
    images = np.full((n, SIZE, SIZE, 3), (220, 160, 160), np.uint8)
    labels = np.arange(n) % 3
    for i, label in enumerate(labels):
        y, x = rng.integers(2, 6, 2)
        colour = rng.integers(40, 200, 3)
        if label == 0:
            images[i, y : y + 9, x : x + 9] = colour
        elif label == 1:
            images[i, y : y + 9, x : x + 9] = colour
            images[i, y + 3 : y + 6, x + 3 : x + 6] = (220, 160, 160)
        else:
            images[i, y + 3 : y + 6, 1:-1] = colour
    split = Split(images=images, ids=[f"t/{i}" for i in range(n)], labels=labels.astype(np.int64))
    return Dataset(
        name="inline", task=task, class_names=["block", "frame", "bar"], train=split, test=split
    )


def toy_segmentation() -> Dataset:
    from saadi_core.data.toy_seg import make_toy_seg

    return make_toy_seg(seed=0, n_train=24, n_test=8, image_size=SIZE)


def stack_images(samples: Sequence[Any]) -> torch.Tensor:
    return torch.stack([s.image for s in samples])


@contextlib.contextmanager
def guidance_scale(generator: Any, scale: float) -> Iterator[None]:
    """Sample with another classifier-free guidance scale, restoring the option afterwards."""
    previous = generator.options.guidance_scale
    generator.options.guidance_scale = scale
    try:
        yield
    finally:
        generator.options.guidance_scale = previous


def perturbed_predictions(
    target: Any, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``target.predict`` before and after shifting the trainable module's output convolution
    (restored afterwards): the prediction must go through that module."""
    with torch.no_grad():
        before = target.predict(x_t, t, cond)
        weight = target.trainable_module().conv_out.weight
        original = weight.clone()
        weight.add_(0.05)
        after = target.predict(x_t, t, cond)
        weight.copy_(original)
    return before, after


#: the widths of :func:`save_tiny_stable_diffusion`: 16 px images, a 2x VAE (latents 4x8x8)
TINY_SD = SDShape(
    unet_channels=(16, 32),
    unet_attention=(False, True),
    unet_layers=1,
    unet_head_dim=8,
    unet_norm_groups=8,
    vae_channels=(8, 16),
    vae_layers=1,
    vae_norm_groups=8,
    text_width=16,
    text_layers=1,
    text_heads=2,
    image_size=SIZE,
    controlnet_embedding=(8, 16),
)


def save_tiny_stable_diffusion(root: Path, *, inpainting: bool = False) -> None:
    """A miniature Stable Diffusion (``inpainting``: SD inpainting, a 9-input-channel UNet)
    directory written with ``save_pretrained`` (no download)."""
    save_stable_diffusion(root, TINY_SD, inpainting=inpainting)
