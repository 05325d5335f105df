"""Options of the ``ssd`` generator (Surgical Stable Diffusion).

Every default is the ``tiny`` profile: a small SD-architecture model built from config and
trained on the embedded toy data on a 2-core CPU in about 3–4 minutes. The tiny defaults were
chosen by measurement on ``toy-cls`` (oracle pass rate of 80 samples, ``docs/benchmarks.md``):
a 0.75 M-parameter UNet (32/64 channels, cross-attention in the mid block only) trained for many
cheap steps beat a 4 M one trained for few (0.30 vs 0.06 oracle pass in similar CPU time), and
x0-prediction ("sample") gave clean, single-coloured organs where v-prediction still showed
speckle after the same steps (0.17 vs 0.06 at 600 steps). The same UNet works at **32 px**
(pixel-unshuffle 2, latents 16×16×12) with **classifier-free guidance 3**: at 64 px (unshuffle 4,
16×16×48) its samples were coloured blobs that hardly depended on the class (toy-cls version 2:
oracle 21 % after 1500 steps), at 32 px it draws the organs and the class decides which (52 %
with guidance 3, 33 % without). The ``paper`` profile
(see :data:`PAPER_PROFILE`) fine-tunes a local Stable Diffusion directory. Kept free of torch so
plugin discovery stays fast.

The settings SSD shares with the other latent diffusion generators (autoencoder, text encoder,
optimiser, EMA, sampler, …) and their validation live in
:class:`saadi_core.diffusion.latent_options.LatentDiffusionOptions`; SSD's own defaults are set
here. To give SSD a different default for a shared field, declare that field again in
:class:`SSDOptions` (the whole ``Field``, constraints included).
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

PAPER_PROMPT = "An image of {class} in laparoscopic gynecological surgery"


class SSDOptions(LatentDiffusionOptions):
    """Text-conditioned latent diffusion: UNet2DConditionModel + autoencoder + CLIP text encoder."""

    prompt_template: str = Field(
        default=PAPER_PROMPT,
        description="per-class prompt; '{class}' is replaced by the class name",
    )

    # ---- where the model comes from
    pretrained: Literal["embedded"] | Path | None = Field(
        default="embedded",
        description="'embedded' (tiny default): start from the weights pretrained on the toy corpus that ship with "
        "ssd and fine-tune them (docs/pretraining.md); a path: a local diffusers Stable Diffusion directory (unet/, "
        "vae/, text_encoder/, tokenizer/, scheduler/); None (or 'none'): build a small model from the options below "
        "and train it from scratch",
    )

    # ---- resolution (tiny: half the toy image size, see the module docstring)
    resolution: int | None = Field(
        default=32,
        ge=8,
        description="training/sampling size, samples are resized to the dataset's size; None = the dataset's size "
        "(or the pretrained model's native size). tiny: 32 - at 64 px the same UNet drew blobs that ignored the "
        "class (oracle 21 %), at 32 px it draws the organs (52 % with guidance 3; docs/benchmarks.md)",
    )
    unshuffle_factor: int = Field(
        default=2,
        ge=1,
        description="pixel-unshuffle factor f: (resolution)^2 x 3 images become (resolution/f)^2 x 3f^2 latents. "
        "tiny: 2 (32 px -> 16x16x12)",
    )

    # ---- architecture when built from config
    block_out_channels: list[int] = Field(
        default_factory=lambda: [32, 64], description="UNet block_out_channels"
    )
    unet_attention: list[bool] = Field(
        default_factory=lambda: [False, False],
        description="cross-attention per UNet level (0 = full latent size); the mid block always attends, and in tiny "
        "that is where the prompt enters (attention at level 1 doubled the step time)",
    )
    unet_text_time_embedding: bool = Field(
        default=True,
        description="also add the pooled text states to the timestep embedding (global class signal)",
    )

    # ---- diffusion
    prediction_type: PredictionType | None = Field(
        default="sample",
        description="network target; None keeps the pretrained scheduler's (required when building from config). "
        "tiny: 'sample' (x0) - after minutes of CPU training v-prediction still left speckle noise",
    )

    # ---- training
    max_steps: int | None = Field(
        default=None,
        ge=0,
        description="optimiser steps of base training; None = FINE_TUNE_STEPS (1600) from the embedded weights, "
        "SCRATCH_STEPS (1500) otherwise",
    )
    random_flip: bool = Field(
        default=False, description="random horizontal flips of training images"
    )
    class_balanced: bool = Field(
        default=False,
        description="draw training images with every class equally often (weights 1 / class count), instead "
        "of in the data's proportions: rare classes then get as many steps as common ones",
    )

    # ---- sampling
    guidance_scale: float = Field(
        default=3.0,
        ge=0,
        description="classifier-free guidance scale; 1 = no guidance. tiny: 3 - without guidance the tiny model's "
        "samples hardly depend on the class (docs/benchmarks.md)",
    )
    sampling_steps: int = Field(
        default=12,
        ge=1,
        description="denoising steps per sample (tiny: 12; 20 or 30 gave the same oracle pass within noise)",
    )

    @model_validator(mode="after")
    def _default_steps(self) -> SSDOptions:
        if self.max_steps is None:
            self.max_steps = FINE_TUNE_STEPS if self.pretrained == "embedded" else SCRATCH_STEPS
        return self


#: base-training steps from scratch (tiny, measured: docs/benchmarks.md) and from the embedded
#: pretrained weights. 1600, not the 800 that already draw the organs: after 800 steps any further
#: training (an aligner's, or the same LoRA on the real images alone) still raised the oracle pass
#: by ~6 points, so every aligner looked better than it was; from 1600 steps that control reads 0
#: (docs/benchmarks.md, "A converged base")
SCRATCH_STEPS = 1500
FINE_TUNE_STEPS = 1600

#: the paper's setting (:data:`~saadi_core.diffusion.latent_options.PAPER_FINE_TUNING`: fine-tune
#: a local SD directory for 3000 steps, sample with 30) with random flips of the training images.
PAPER_PROFILE: dict[str, Any] = {
    **PAPER_FINE_TUNING,
    "pretrained": None,
    "random_flip": True,
    "resolution": None,
}
