"""Options of the ``ssd`` generator (Surgical Stable Diffusion).

Every default is the ``tiny`` profile: a small SD-architecture model built from config and
trained on the embedded toy data on a 2-core CPU in about 3–4 minutes. The ``paper`` profile
(see :data:`PAPER_PROFILE`) fine-tunes a local Stable Diffusion directory. Kept free of torch so
plugin discovery stays fast.

The settings SSD shares with the other latent diffusion generators (autoencoder, text encoder,
optimiser, EMA, sampler, …) and their validation live in
:class:`saadi_core.diffusion.latent_options.LatentDiffusionOptions`; SSD's own defaults are set
here. To give SSD a different default for a shared field, declare that field again in
:class:`SSDOptions` (the whole ``Field``, constraints included).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from saadi_core.diffusion.latent_options import PAPER_FINE_TUNING, LatentDiffusionOptions, PredictionType

PAPER_PROMPT = "An image of {class} in laparoscopic gynecological surgery"


class SSDOptions(LatentDiffusionOptions):
    """Text-conditioned latent diffusion: UNet2DConditionModel + autoencoder + CLIP text encoder."""

    prompt_template: str = Field(default=PAPER_PROMPT, description="per-class prompt; '{class}' is replaced by the class name")

    # ---- architecture when built from config
    unet_channels: list[int] = Field(default_factory=lambda: [64, 128], description="UNet block_out_channels")
    unet_attention: list[bool] = Field(
        default_factory=lambda: [False, True], description="cross-attention per UNet level (0 = full latent size)"
    )
    unet_text_time_embedding: bool = Field(
        default=True, description="also add the pooled text states to the timestep embedding (global class signal)"
    )

    # ---- diffusion
    prediction_type: PredictionType | None = Field(
        default="v_prediction",
        description="network target; None keeps the pretrained scheduler's (required when building from config)",
    )

    # ---- training
    max_steps: int = Field(default=700, ge=0, description="optimiser steps of base training")
    random_flip: bool = Field(default=False, description="random horizontal flips of training images")

    # ---- sampling
    sampling_steps: int = Field(default=20, ge=1)


#: the paper's setting (:data:`~saadi_core.diffusion.latent_options.PAPER_FINE_TUNING`: fine-tune
#: a local SD directory for 3000 steps, sample with 30) with random flips of the training images.
PAPER_PROFILE: dict[str, Any] = {**PAPER_FINE_TUNING, "random_flip": True}
