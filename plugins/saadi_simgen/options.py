"""Options of the ``simgen`` generator (joint image + mask DDPM after SimGen).

Every default is the ``tiny`` profile: a small diffusers ``UNet2DModel`` trained from scratch on
the embedded ``toy-seg`` data on a 2-core CPU in about two minutes, denoising the 6-channel
image ‖ colour-coded-mask tensor after a pixel-unshuffle (the network sees ``(6·f², H/f, W/f)``;
the diffusion is still on image and mask jointly, in pixel values). :data:`PAPER_PROFILE` holds
the paper's setting (256 px, 64 base channels, multipliers 1-2-4-8, 250 timesteps, Adam 1e-4,
batch 16). ``docs/generators/simgen.md`` explains the choices the paper leaves open.
Kept free of torch so plugin discovery stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from saadi_core.options import GeneratorOptions


class SimGenOptions(GeneratorOptions):
    """Joint image + mask diffusion: a ResUNet (``UNet2DModel``) on image ‖ CFL-coded mask."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(
        default=0, description="seed of weight initialisation and training randomness"
    )
    pretrained: Path | None = Field(
        default=None,
        description="local directory to start from: a saved simgen generator, or a diffusers UNet2DModel in unet/ "
        "(6·f² input/output channels; optional scheduler/); None builds the network from the options below",
    )

    # ---- resolution and joint space
    resolution: int | None = Field(
        default=None, ge=8, description="training/sampling size; None = the dataset's image size"
    )
    unshuffle_factor: int = Field(
        default=4,
        ge=1,
        description="pixel-unshuffle factor f of the joint tensor (6 x H x W -> 6f² x H/f x W/f); 1 = plain pixel "
        "space (paper). tiny: 4 - a 64 px pixel-space UNet cost ~8x more per step on this CPU",
    )

    # ---- network (diffusers UNet2DModel)
    block_out_channels: list[int] = Field(
        default_factory=lambda: [32, 64],
        min_length=1,
        description="block_out_channels per level (tiny: 32/64 - 64/128 cost ~2.4x per step on this CPU)",
    )
    layers_per_block: int = Field(
        default=1, ge=1, description="ResNet blocks per level (paper: 2 ConvBlocks)"
    )
    mid_attention: bool = Field(
        default=True,
        description="self-attention in the mid block (where LoRA's to_q/to_k/to_v/to_out.0 live)",
    )
    attention_head_dim: int = Field(
        default=32, ge=1, description="head dimension of the mid-block attention"
    )
    norm_num_groups: int = Field(
        default=32, ge=1, description="GroupNorm groups (must divide every channel count)"
    )
    act_fn: Literal["silu", "gelu"] = Field(
        default="silu", description="ResNet activation (paper: GELU)"
    )

    # ---- conditioning
    conditioning: Literal["none", "class-presence"] = Field(
        default="none",
        description="'none': unconditional, one condition 'uncond' (paper); 'class-presence': one condition per set "
        "of classes seen together in a training mask, embedded and added to the time embedding, so rare classes "
        "can be asked for",
    )
    condition_dropout: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="class-presence: share of training steps on the null label (for guidance)",
    )
    guidance_scale: float = Field(
        default=1.0, ge=0, description="class-presence: classifier-free guidance; 1 = none"
    )

    # ---- diffusion
    num_train_timesteps: int = Field(
        default=250, ge=10, description="diffusion timesteps (paper: 250)"
    )
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field(
        default="squaredcos_cap_v2",
        description="noise schedule; cosine reaches pure noise at t=T with 250 steps (DDPM's linear betas leave "
        "alpha_bar_T ~ 0.08 at T=250)",
    )
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = Field(
        default="sample",
        description="network target (paper: epsilon). tiny: 'sample' (x0) - clean samples after minutes of CPU training",
    )

    # ---- training
    max_steps: int = Field(
        default=700, ge=0, description="optimiser steps (0 = use 'pretrained' as it is)"
    )
    batch_size: int = Field(default=32, ge=1, description="image+mask pairs per step and process")
    learning_rate: float = Field(default=1e-3, gt=0)
    lr_warmup_steps: int = Field(default=50, ge=0)
    weight_decay: float = Field(
        default=0.0, ge=0, description="AdamW weight decay (0 = Adam, as the paper)"
    )
    grad_clip: float = Field(default=1.0, gt=0)
    ema_decay: float = Field(
        default=0.999,
        ge=0,
        lt=1,
        description="max EMA decay of the trained weights; 0 disables EMA",
    )
    ema_power: float = Field(
        default=0.75, gt=0, description="EMA warm-up: decay at step k = 1 - (1 + k)^-power (capped)"
    )
    random_flip: bool = Field(
        default=True, description="random horizontal/vertical flips of image+mask pairs"
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto", description="'auto' = bf16 on a CUDA device that supports it, else fp32"
    )
    log_every: int = Field(default=25, ge=1, description="training steps per progress log event")

    # ---- sampling
    sampler: Literal["ddim", "dpm-solver++"] = Field(
        default="ddim", description="deterministic sampler"
    )
    sampling_steps: int = Field(default=10, ge=1, description="denoising steps per sample")
    sample_batch_size: int = Field(
        default=16,
        ge=1,
        description="fixed internal batch size of sampling (samples are bit-identical for a given value)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SimGenOptions:
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError("every block_out_channels entry must be divisible by norm_num_groups")
        if self.mid_attention and self.block_out_channels[-1] % self.attention_head_dim:
            raise ValueError(
                "the last block_out_channels entry must be divisible by attention_head_dim"
            )
        return self


#: the paper's setting: 256 px in pixel space, 64 feature maps with multipliers (1, 2, 4, 8), two
#: ConvBlocks per level with GELU, no attention, 250 timesteps, epsilon-prediction, Adam lr 1e-4,
#: batch 16. Left open by the paper and chosen here: the step count (the paper reports 5 days on a
#: V100), EMA 0.9999, and sampling with 250 deterministic DDIM steps (the paper's DDPM trajectory
#: without its per-step noise, so samples stay a function of (seed, condition, index)).
PAPER_PROFILE: dict[str, Any] = {
    "resolution": 256,
    "unshuffle_factor": 1,
    "block_out_channels": [64, 128, 256, 512],
    "layers_per_block": 2,
    "mid_attention": False,
    "act_fn": "gelu",
    "prediction_type": "epsilon",
    "max_steps": 300_000,
    "batch_size": 16,
    "learning_rate": 1e-4,
    "lr_warmup_steps": 0,
    "ema_decay": 0.9999,
    "log_every": 100,
    "sampling_steps": 250,
    "sample_batch_size": 16,
}
