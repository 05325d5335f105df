"""Test helpers shared by the latent diffusion generators' tests (``ssd``, ``ssi``).

Small models on 16 px images, a miniature Stable Diffusion directory written locally (no
download), and the probes the tests of both generators use.
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saadi_core.data.dataset import Dataset, Split

SIZE = 16

#: a UNet of a few 10k parameters that trains in seconds (each test module adds its own keys)
LATENT_SMALL: dict[str, Any] = {
    "seed": 3,
    "pretrained": None,  # built from config (the embedded weights are for the tiny architecture)
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
    return Dataset(name="inline", task=task, class_names=["block", "frame", "bar"], train=split, test=split)


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


def perturbed_predictions(target: Any, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
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


def save_tiny_stable_diffusion(root: Path, *, inpainting: bool = False) -> None:
    """A miniature Stable Diffusion (``inpainting``: SD inpainting, a 9-input-channel UNet)
    directory written with ``save_pretrained`` (no download)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase:  # character-level BPE without merges
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=32, projection_dim=16,
        )
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=16,
    )
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=9 if inpainting else 4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8,
    )
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    for name, part in [("tokenizer", tokenizer), ("text_encoder", text_encoder), ("vae", vae), ("unet", unet), ("scheduler", scheduler)]:
        part.save_pretrained(root / name)
