"""Options of the ``ssi`` generator (Surgical Stable Inpaint).

Every default is the ``tiny`` profile: a small SD-inpainting-architecture model built from config
and trained on the embedded ``toy-seg`` data on a 2-core CPU in a few minutes. The ``paper``
profile (see :data:`PAPER_PROFILE`) fine-tunes a local Stable Diffusion *inpainting* directory.
Kept free of torch so plugin discovery stays fast.

The settings SSI shares with the other latent diffusion generators and their validation live in
:class:`saadi_core.diffusion.latent_options.LatentDiffusionOptions`; SSI's own defaults and its
inpainting settings (training views, conditions, background) are set here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from saadi_core.diffusion.latent_options import (
    PAPER_FINE_TUNING,
    LatentDiffusionOptions,
    PredictionType,
)

#: the per-region prompt; class names are written with spaces ("cystic_duct" -> "cystic duct")
PAPER_PROMPT = "An image of {class} in laparoscopic cholecystectomy"


class SSIOptions(LatentDiffusionOptions):
    """Mask-conditioned latent inpainting: UNet2DConditionModel fed noisy latent ‖ region mask ‖
    masked-image latent, cross-attending to the region's class prompt."""

    seed: int = Field(
        default=0,
        description="seed of weight initialisation, training randomness and condition selection",
    )
    prompt_template: str = Field(
        default=PAPER_PROMPT,
        description="per-region prompt; '{class}' is replaced by the class name (underscores as spaces)",
    )

    # ---- where the model comes from
    pretrained: Literal["embedded"] | Path | None = Field(
        default=None,
        description="'embedded': start from the weights pretrained on the toy corpus that ship with ssi and "
        "fine-tune (docs/pretraining.md); "
        "a path: a local diffusers Stable Diffusion inpainting directory (unet/ with 2C+1 input channels, vae/, "
        "text_encoder/, tokenizer/, scheduler/); None (or 'none') builds a small model from the options below "
        "(tiny default until the finished embedded weights are measured: docs/pretraining.md)",
    )

    # ---- architecture when built from config
    block_out_channels: list[int] = Field(
        default_factory=lambda: [32, 64],
        description="UNet block_out_channels (inpainting needs less capacity than SSD's whole-image generation)",
    )
    unet_attention: list[bool] = Field(
        default_factory=lambda: [False, False],
        description="cross-attention per UNet level (0 = full latent size); the mid block always attends, and in tiny "
        "that is where the prompt enters (attention at level 1 doubled the sampling cost for no measured gain)",
    )

    # ---- diffusion
    prediction_type: PredictionType | None = Field(
        default="sample",
        description="network target; None keeps the pretrained scheduler's (required when building from config). "
        "tiny: 'sample' (x0) - after minutes of CPU training v-prediction still left speckle noise in the regions",
    )

    # ---- training
    max_steps: int | None = Field(
        default=None,
        ge=0,
        description="optimiser steps of base training; None = FINE_TUNE_STEPS (300) from the embedded weights, "
        "SCRATCH_STEPS (600) otherwise",
    )
    batch_size: int = Field(default=32, ge=1, description="region views per step and process")
    background_view_share: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="share of training views that inpaint the background region (teaches the background prompt, "
        "needed for conditions without a known image and for regenerate_background); 0 = foreground only",
    )
    random_flip: bool = Field(
        default=True, description="random horizontal/vertical flips of training image+mask pairs"
    )

    # ---- conditions
    n_conditions: int | None = Field(
        default=128,
        ge=1,
        description="training masks used as conditions (a seeded subset); None = every training mask. "
        "The pool holds n_conditions x (1 + augment_copies) x n_per_condition images. Their real images are "
        "all that the aligners' real-image terms and the train-longer control fine-tune on, so many masks with "
        "few samples each beat few masks with many (toy-seg: 128 against 16, docs/benchmarks.md)",
    )
    condition_augment: Literal["none", "flip", "affine"] = Field(
        default="none",
        description="augmented copies of each condition mask (and its known image): 'flip' = random flips, "
        "'affine' = flips + small rotation/scale/shift",
    )
    augment_copies: int = Field(
        default=1,
        ge=1,
        description="augmented copies per mask when condition_augment is not 'none'",
    )
    affine_degrees: float = Field(
        default=10.0, ge=0, le=45, description="max rotation of 'affine' augmentation"
    )
    affine_translate: float = Field(
        default=0.05, ge=0, le=0.25, description="max shift of 'affine', as a fraction of the size"
    )
    affine_scale: float = Field(
        default=0.1, ge=0, le=0.5, description="max relative zoom of 'affine' (1 ± value)"
    )

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
    sampling_steps: int = Field(default=5, ge=1, description="denoising steps of each region pass")

    @model_validator(mode="after")
    def _default_steps(self) -> SSIOptions:
        if self.max_steps is None:
            self.max_steps = FINE_TUNE_STEPS if self.pretrained == "embedded" else SCRATCH_STEPS
        return self


#: base-training steps from scratch (tiny, measured: docs/benchmarks.md) and from the embedded
#: pretrained weights (docs/pretraining.md)
SCRATCH_STEPS = 600
FINE_TUNE_STEPS = 300

#: the paper's setting (:data:`~saadi_core.diffusion.latent_options.PAPER_FINE_TUNING`: fine-tune
#: a local SD inpainting directory for 3000 steps, sample with 30 steps per region) with 48
#: condition masks (with 64 samples each, a pool of ~3000 ≈ 8 x |train| of Endoscapes).
PAPER_PROFILE: dict[str, Any] = {**PAPER_FINE_TUNING, "pretrained": None, "n_conditions": 48}
