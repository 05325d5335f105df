"""Options of the ``casdm`` generator (Class-Aware Semantic Diffusion Model).

Every default is the ``tiny`` profile: a small SPADE UNet trained from scratch on the embedded
``toy-seg`` data on a 2-core CPU in a few minutes, on pixel-unshuffled images (64 px -> 16×16×48,
the mask stays at 64 px; see :mod:`saadi_casdm.network`). The ``paper`` profile
(:data:`PAPER_PROFILE`) is the paper's recipe: pixel space at 256 px, batch 10, lr 1e-4, ~100
epochs, a linear-β DDPM with ε-prediction, DPM-Solver++ with 30 steps. CASDM is trained from
scratch in the paper; ``pretrained`` starts from a saved ``casdm`` generator instead.

The layout generator (the paper's text-prompted segmentation-map generator) has its own
``layout_*`` settings; it is trained only when ``conditions`` uses generated layouts.
Kept free of torch so plugin discovery stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from saadi_core.options import GeneratorOptions

PredictionType = Literal["epsilon", "v_prediction", "sample"]


class CASDMOptions(GeneratorOptions):
    """Mask-conditioned diffusion with SPADE decoder, class-aware MSE and self-perceptual loss."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(
        default=0,
        description="seed of weight initialisation, training randomness, condition choice and layouts",
    )
    pretrained: Path | None = Field(
        default=None,
        description="directory of a saved casdm generator whose image network (and layout model, if any) training "
        "starts from; None = random initialisation from the options below",
    )
    resolution: int | None = Field(
        default=None, ge=8, description="training/sampling size; None = the dataset's image size"
    )
    unshuffle_factor: int = Field(
        default=4,
        ge=1,
        description="pixel-unshuffle factor f of the image network's input/output (1 = pixel space); the mask is "
        "always read at full resolution. tiny: 4 (64 px -> 16x16x48) for CPU speed",
    )

    # ---- image network (SemanticUNet)
    block_out_channels: list[int] = Field(
        default_factory=lambda: [32, 64], min_length=1, description="width per UNet level"
    )
    layers_per_block: int = Field(
        default=1, ge=1, description="ResNet blocks per level on each side"
    )
    norm_num_groups: int = Field(
        default=32, ge=1, description="GroupNorm groups (must divide every channel count)"
    )
    attention: bool = Field(default=True, description="self-attention at the bottleneck")
    attention_head_dim: int = Field(default=32, ge=1)
    mask_hidden_channels: int = Field(
        default=32, ge=1, description="width of each level's SPADE mask features"
    )
    mask_detail: int = Field(
        default=4,
        ge=1,
        description="max space-to-depth factor of the mask per level (see spade.py)",
    )
    dropout: float = Field(default=0.0, ge=0, lt=1)

    # ---- diffusion
    num_train_timesteps: int = Field(default=1000, ge=10)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field(
        default="squaredcos_cap_v2",
        description="training noise schedule (paper: the traditional linear DDPM one)",
    )
    prediction_type: PredictionType = Field(
        default="sample",
        description="network target (paper: epsilon). tiny: 'sample' (x0) - minutes of CPU training leave "
        "epsilon/v predictions noisy (docs/method.md)",
    )

    # ---- losses
    class_aware_mse: bool = Field(
        default=True, description="Eq. 6-7 class-weighted MSE; false = plain MSE (SDM)"
    )
    perceptual_weight: float = Field(
        default=0.5,
        ge=0,
        description="weight of the class-aware self-perceptual loss (Eq. 8) next to the MSE; 0 = off",
    )

    # ---- training
    max_steps: int = Field(default=600, ge=0, description="optimiser steps of the image network")
    batch_size: int = Field(default=32, ge=1, description="images per step and process")
    learning_rate: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="constant", description="after the linear warm-up"
    )
    lr_warmup_steps: int = Field(default=50, ge=0)
    weight_decay: float = Field(default=1e-2, ge=0)
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
        default=True, description="random horizontal/vertical flips of training image+mask pairs"
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto", description="'auto' = bf16 on a CUDA device that supports it, else fp32"
    )
    log_every: int = Field(default=25, ge=1, description="training steps per progress log event")

    # ---- conditions
    conditions: Literal["training-masks", "generated-layouts", "both"] = Field(
        default="training-masks",
        description="what a pool is generated for: training masks (like ssi; the selector scores Dice against them), "
        "new masks from the layout generator prompted with training masks' descriptions, or both",
    )
    n_conditions: int | None = Field(
        default=16,
        ge=1,
        description="training masks used as conditions (a seeded subset; None = all); generated layouts: as many, "
        "one per described training mask",
    )

    # ---- sampling
    sampling_steps: int = Field(
        default=10, ge=1, description="DPM-Solver++ steps per sample (paper: 30)"
    )
    sample_batch_size: int = Field(
        default=16,
        ge=1,
        description="fixed internal batch size of sampling (samples are bit-identical for a given value)",
    )

    # ---- layout generator (text-prompted segmentation maps)
    layout_unshuffle_factor: int = Field(
        default=4, ge=1, description="pixel-unshuffle factor of the colour maps"
    )
    layout_block_out_channels: list[int] = Field(
        default_factory=lambda: [32, 64], min_length=1, description="layout UNet widths"
    )
    layout_attention: list[bool] = Field(
        default_factory=lambda: [False, False],
        description="cross-attention to the class prompts per layout UNet level; the mid block always attends "
        "(tiny: there only - attention at level 1 doubled the step time)",
    )
    layout_text_encoder: Path | None = Field(
        default=None,
        description="local directory holding a CLIP text_encoder/ and tokenizer/ (e.g. a Stable Diffusion directory), "
        "used frozen as in the paper; None = a small CLIP text encoder built here and trained with the layout model",
    )
    layout_text_hidden_size: int = Field(
        default=64,
        ge=8,
        description="width of the built text encoder (ignored with layout_text_encoder)",
    )
    layout_class_aware_mse: bool = Field(
        default=False,
        description="train the layout model with the class-aware MSE (Eq. 6-7) instead of the paper's plain MSE",
    )
    layout_max_steps: int = Field(
        default=600, ge=0, description="optimiser steps of the layout model"
    )
    layout_batch_size: int = Field(default=32, ge=1)
    layout_learning_rate: float = Field(default=1e-3, gt=0)
    layout_sampling_steps: int = Field(
        default=10, ge=1, description="DPM-Solver++ steps per generated layout"
    )

    @model_validator(mode="after")
    def _consistent(self) -> CASDMOptions:
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                "every 'block_out_channels' entry must be divisible by 'norm_num_groups'"
            )
        if len(self.layout_block_out_channels) != len(self.layout_attention):
            raise ValueError(
                "layout_block_out_channels and layout_attention must have the same length"
            )
        if any(c % 32 for c in self.layout_block_out_channels):
            raise ValueError(
                "every 'layout_block_out_channels' entry must be divisible by 32 (its GroupNorm groups)"
            )
        return self


#: the paper's recipe ("Model Implementation"): 256 px in pixel space, batch 10, lr 1e-4, ~100
#: epochs of CholecSeg8K's 6868 training pairs (≈ 69k steps), a traditional (linear-β) DDPM with
#: ε-prediction, DPM-Solver++ with 30 steps; the segmentation-map generator uses the same settings.
#: Not given by the paper, set here: SDM-like widths (128/256/256/512, two blocks per level),
#: cosine decay after 1000 warm-up steps and EMA 0.9999 (the authors' code uses both), the
#: self-perceptual weight 0.5, 48 condition masks.
PAPER_PROFILE: dict[str, Any] = {
    "resolution": 256,
    "unshuffle_factor": 1,
    "block_out_channels": [128, 256, 256, 512],
    "layers_per_block": 2,
    "attention_head_dim": 64,
    "mask_hidden_channels": 128,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "max_steps": 69000,
    "batch_size": 10,
    "learning_rate": 1e-4,
    "lr_schedule": "cosine",
    "lr_warmup_steps": 1000,
    "ema_decay": 0.9999,
    "log_every": 100,
    "n_conditions": 48,
    "sampling_steps": 30,
    "sample_batch_size": 8,
    "layout_unshuffle_factor": 1,
    "layout_block_out_channels": [128, 256, 256, 512],
    "layout_attention": [False, True, True, True],
    "layout_text_hidden_size": 512,
    "layout_max_steps": 69000,
    "layout_batch_size": 10,
    "layout_learning_rate": 1e-4,
    "layout_sampling_steps": 30,
}
