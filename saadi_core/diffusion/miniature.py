"""Stable Diffusion directories written locally with random weights: the ``paper`` profile's code
paths without a download.

The ``paper`` profile loads a local diffusers Stable Diffusion directory (``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``), an SD *inpainting* one (9-channel UNet) and a
ControlNet. Tests, CI and the GPU check need those layouts without network access, so this module
builds them with the real diffusers/transformers classes and ``save_pretrained``:

* :data:`MINIATURE` — widths that make a whole ``saadi run --profile paper`` take a minute on a CPU;
* :data:`SD15` — Stable Diffusion 1.5's widths (an 860 M-parameter UNet), for
  ``benchmarks/gpu_paper_profile.py`` when no real checkpoint is given.

The tokenizer is a ``CLIPTokenizer`` over single characters (no BPE merges): every prompt
tokenizes without an out-of-vocabulary token, and ``model_max_length`` 77 (SD's) holds the paper's
prompts. The weights are random (seeded): these directories exercise loading, shapes, precision and
the loop, not image quality.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class SDShape:
    """The widths of a Stable-Diffusion-architecture model (UNet, VAE, CLIP text encoder)."""

    unet_channels: tuple[int, ...]
    unet_attention: tuple[bool, ...]
    unet_layers: int
    unet_head_dim: int
    unet_norm_groups: int
    vae_channels: tuple[int, ...]
    vae_layers: int
    vae_norm_groups: int
    text_width: int
    text_layers: int
    text_heads: int
    #: the native image size in pixels (SD 1.5: 512)
    image_size: int
    controlnet_embedding: tuple[int, ...] = field(default=(16, 32, 96, 256))

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae_channels) - 1)


#: a few 10k-parameter model per part at 32 px (latents 4x8x8 through a 4x VAE)
MINIATURE = SDShape(
    unet_channels=(16, 32),
    unet_attention=(False, True),
    unet_layers=1,
    unet_head_dim=8,
    unet_norm_groups=8,
    vae_channels=(8, 16, 16),
    vae_layers=1,
    vae_norm_groups=8,
    text_width=16,
    text_layers=1,
    text_heads=2,
    image_size=32,
    controlnet_embedding=(8, 16, 16),
)

#: Stable Diffusion 1.5's widths (UNet (320, 640, 1280, 1280), VAE 8x, CLIP ViT-L/14 text side)
SD15 = SDShape(
    unet_channels=(320, 640, 1280, 1280),
    unet_attention=(True, True, True, False),
    unet_layers=2,
    unet_head_dim=8,
    unet_norm_groups=32,
    vae_channels=(128, 256, 512, 512),
    vae_layers=2,
    vae_norm_groups=32,
    text_width=768,
    text_layers=12,
    text_heads=12,
    image_size=512,
)


def character_tokenizer(max_length: int = 77) -> Any:
    """A ``CLIPTokenizer`` whose vocabulary is single characters (lower-case letters, digits)."""
    import json
    import tempfile

    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab))
        merges_file.write_text("#version: 0.2\n")
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=max_length)


def build_parts(shape: SDShape, *, inpainting: bool = False, seed: int = 0) -> dict[str, Any]:
    """The five parts of a Stable Diffusion directory, random-initialised from ``seed``."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = character_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=shape.text_width,
                intermediate_size=4 * shape.text_width,
                num_hidden_layers=shape.text_layers,
                num_attention_heads=shape.text_heads,
                max_position_embeddings=tokenizer.model_max_length,
                projection_dim=shape.text_width,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        levels = len(shape.vae_channels)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=shape.vae_channels,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            layers_per_block=shape.vae_layers,
            norm_num_groups=shape.vae_norm_groups,
            sample_size=shape.image_size,
        )
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in shape.unet_attention)
        up = tuple(
            "CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(shape.unet_attention)
        )
        unet = UNet2DConditionModel(
            sample_size=shape.image_size // shape.vae_factor,
            in_channels=9 if inpainting else 4,
            out_channels=4,
            block_out_channels=shape.unet_channels,
            layers_per_block=shape.unet_layers,
            down_block_types=down,
            up_block_types=up,
            cross_attention_dim=shape.text_width,
            attention_head_dim=shape.unet_head_dim,
            norm_num_groups=shape.unet_norm_groups,
        )
    # SD 1.5's training schedule (epsilon prediction, scaled-linear betas)
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "unet": unet,
        "scheduler": scheduler,
    }


def save_stable_diffusion(
    root: Path, shape: SDShape = MINIATURE, *, inpainting: bool = False, seed: int = 0
) -> Path:
    """Write a Stable Diffusion (``inpainting``: SD inpainting) directory to ``root``; returns it."""
    from saadi_core.diffusion.builders import quiet_hf_progress

    root = Path(root)
    with quiet_hf_progress():
        for name, part in build_parts(shape, inpainting=inpainting, seed=seed).items():
            part.save_pretrained(root / name)
    return root


def save_controlnet(root: Path, sd_dir: Path, shape: SDShape = MINIATURE, *, seed: int = 1) -> Path:
    """Write a ControlNet for the UNet of ``sd_dir`` to ``root``; returns it.

    Built with ``ControlNetModel.from_unet`` (what ControlNet training starts from), then its
    zero-initialised output convolutions get small random weights, as a *trained* ControlNet's
    have — with zeros the control image would not reach the UNet at all.
    """
    from diffusers import ControlNetModel, UNet2DConditionModel

    from saadi_core.diffusion.builders import quiet_hf_progress

    with quiet_hf_progress():
        unet = UNet2DConditionModel.from_pretrained(Path(sd_dir) / "unet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        controlnet = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=shape.controlnet_embedding
        )
        with torch.no_grad():
            for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
                conv.weight.normal_(0, 0.05)
    with quiet_hf_progress():
        controlnet.save_pretrained(root)
    return Path(root)
