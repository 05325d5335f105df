"""Options of the ``ssi`` generator (Surgical Stable Inpaint).

Every default is the ``tiny`` profile: a small SD-inpainting-architecture model built from config
and trained on the embedded ``toy-seg`` data on a 2-core CPU in a few minutes. The ``paper``
profile (see :data:`PAPER_PROFILE`) fine-tunes a local Stable Diffusion *inpainting* directory.
Kept free of torch so plugin discovery stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: the per-region prompt; class names are written with spaces ("cystic_duct" -> "cystic duct")
PAPER_PROMPT = "An image of {class} in laparoscopic cholecystectomy"


class SSIOptions(BaseModel):
    """Mask-conditioned latent inpainting: UNet2DConditionModel fed noisy latent ‖ region mask ‖
    masked-image latent, cross-attending to the region's class prompt."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(default=0, description="seed of weight initialisation, training randomness and condition selection")
    prompt_template: str = Field(
        default=PAPER_PROMPT, description="per-region prompt; '{class}' is replaced by the class name (underscores as spaces)"
    )

    # ---- where the model comes from
    pretrained: Path | None = Field(
        default=None,
        description="local diffusers Stable Diffusion inpainting directory (unet/ with 2C+1 input channels, vae/, "
        "text_encoder/, tokenizer/, scheduler/); None builds a small model from the options below",
    )
    autoencoder: Literal["pixel-unshuffle", "kl"] = Field(
        default="pixel-unshuffle",
        description="'pixel-unshuffle': fixed lossless space-to-depth (no training, tiny profile); "
        "'kl': a diffusers AutoencoderKL loaded from pretrained/vae or autoencoder_path",
    )
    autoencoder_path: Path | None = Field(default=None, description="local AutoencoderKL directory (overrides pretrained/vae)")
    unshuffle_factor: int = Field(
        default=4, ge=1, description="pixel-unshuffle factor f: 64x64x3 images become (64/f)x(64/f)x(3f^2) latents"
    )
    resolution: int | None = Field(
        default=None, ge=8, description="training/sampling size; None = the dataset's size (or the pretrained model's native size)"
    )

    # ---- architecture when built from config
    unet_channels: list[int] = Field(
        default_factory=lambda: [32, 64],
        description="UNet block_out_channels (inpainting needs less capacity than SSD's whole-image generation)",
    )
    unet_attention: list[bool] = Field(
        default_factory=lambda: [False, False],
        description="cross-attention per UNet level (0 = full latent size); the mid block always attends, and in tiny "
        "that is where the prompt enters (attention at level 1 doubled the sampling cost for no measured gain)",
    )
    unet_layers_per_block: int = Field(default=1, ge=1)
    unet_head_dim: int = Field(default=32, ge=1, description="attention head dimension")
    unet_norm_groups: int = Field(default=32, ge=1, description="GroupNorm groups (must divide every channel count)")
    text_hidden_size: int = Field(default=64, ge=8, description="CLIP text encoder width (= UNet cross_attention_dim)")
    text_layers: int = Field(default=2, ge=1)
    text_heads: int = Field(default=4, ge=1)

    # ---- diffusion
    num_train_timesteps: int = Field(default=1000, ge=10)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field(
        default="squaredcos_cap_v2", description="noise schedule when built from config (pretrained keeps its own)"
    )
    prediction_type: Literal["epsilon", "v_prediction", "sample"] | None = Field(
        default="sample",
        description="network target; None keeps the pretrained scheduler's (required when building from config). "
        "tiny: 'sample' (x0) - after minutes of CPU training v-prediction still left speckle noise in the regions",
    )

    # ---- training
    max_steps: int = Field(default=600, ge=0, description="optimiser steps of base training")
    batch_size: int = Field(default=32, ge=1, description="region views per step and process")
    learning_rate: float = Field(default=1e-3, gt=0)
    lr_warmup_steps: int = Field(default=50, ge=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    train_text_encoder: bool = Field(default=True, description="train the text encoder jointly with the UNet")
    prompt_dropout: float = Field(
        default=0.1, ge=0, le=1, description="probability of training on the empty prompt (enables classifier-free guidance)"
    )
    background_view_share: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="share of training views that inpaint the background region (teaches the background prompt, "
        "needed for conditions without a known image and for regenerate_background); 0 = foreground only",
    )
    ema_decay: float = Field(default=0.999, ge=0, lt=1, description="max EMA decay of the trained weights; 0 disables EMA")
    ema_power: float = Field(default=0.75, gt=0, description="EMA warm-up: decay at step k = 1 - (1 + k)^-power (capped)")
    random_flip: bool = Field(default=True, description="random horizontal/vertical flips of training image+mask pairs")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto", description="'auto' = bf16 on a CUDA device that supports it, else fp32"
    )
    gradient_checkpointing: bool = Field(default=False)
    log_every: int = Field(default=25, ge=1, description="training steps per progress log event")

    # ---- conditions
    n_conditions: int | None = Field(
        default=16,
        ge=1,
        description="training masks used as conditions (a seeded subset); None = every training mask. "
        "The pool holds n_conditions x (1 + augment_copies) x n_per_condition images",
    )
    condition_augment: Literal["none", "flip", "affine"] = Field(
        default="none",
        description="augmented copies of each condition mask (and its known image): 'flip' = random flips, "
        "'affine' = flips + small rotation/scale/shift",
    )
    augment_copies: int = Field(default=1, ge=1, description="augmented copies per mask when condition_augment is not 'none'")
    affine_degrees: float = Field(default=10.0, ge=0, le=45, description="max rotation of 'affine' augmentation")
    affine_translate: float = Field(default=0.05, ge=0, le=0.25, description="max shift of 'affine', as a fraction of the size")
    affine_scale: float = Field(default=0.1, ge=0, le=0.5, description="max relative zoom of 'affine' (1 ± value)")

    # ---- sampling
    regenerate_background: bool = Field(
        default=False,
        description="also inpaint the background region (first pass, background prompt) instead of keeping the "
        "known image's real background; always done for conditions without a known image",
    )
    background_bank: int = Field(
        default=8,
        ge=1,
        description="real training images saved with the model; the known image of a condition that has only a "
        "mask is one of them (picked by the condition id)",
    )
    sampler: Literal["ddim", "dpm-solver++"] = Field(default="ddim", description="deterministic sampler (DDIM eta=0 or DPM-Solver++)")
    sampling_steps: int = Field(default=5, ge=1, description="denoising steps of each region pass")
    guidance_scale: float = Field(default=1.0, ge=0, description="classifier-free guidance scale; 1 = no guidance")
    sample_batch_size: int = Field(
        default=16, ge=1, description="fixed internal batch size of sampling (samples are bit-identical for a given value)"
    )

    @field_validator("prompt_template")
    @classmethod
    def _has_class(cls, value: str) -> str:
        if "{class}" not in value:
            raise ValueError("must contain '{class}'")
        try:
            value.format(**{"class": "x"})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only the '{{class}}' placeholder is allowed ({exc})") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SSIOptions":
        if len(self.unet_channels) != len(self.unet_attention):
            raise ValueError("unet_channels and unet_attention must have the same length")
        if any(c % self.unet_norm_groups for c in self.unet_channels):
            raise ValueError("every unet_channels entry must be divisible by unet_norm_groups")
        if self.text_hidden_size % self.text_heads:
            raise ValueError("text_hidden_size must be divisible by text_heads")
        return self


#: the paper's setting: fine-tune a local SD inpainting directory (the user sets ``pretrained``)
#: for 3000 AdamW steps and sample with 30 steps per region. Values the paper leaves open: lr
#: 1e-5, batch 8 with gradient checkpointing, frozen text encoder, no EMA, guidance 7.5 (the SD
#: inpainting pipeline's default), 48 condition masks (with 64 samples each, a pool of ~3000 ≈
#: 8 x |train| of Endoscapes).
PAPER_PROFILE: dict[str, Any] = {
    "autoencoder": "kl",
    "prediction_type": None,
    "max_steps": 3000,
    "batch_size": 8,
    "learning_rate": 1e-5,
    "lr_warmup_steps": 0,
    "weight_decay": 1e-2,
    "train_text_encoder": False,
    "prompt_dropout": 0.1,
    "ema_decay": 0.0,
    "gradient_checkpointing": True,
    "n_conditions": 48,
    "sampling_steps": 30,
    "guidance_scale": 7.5,
    "sample_batch_size": 8,
    "log_every": 50,
}
