"""Options of the ``simuscope`` generator (simulator frame -> realistic frame).

Every default is the ``tiny`` profile: a small SD-architecture UNet and a ControlNet built from
config and trained on the embedded ``toy-seg`` data on a 2-core CPU in a few minutes, with
simulator frames rendered from the training masks by the toy simulator
(:mod:`saadi_simuscope.simulator`). The ``paper`` profile (:data:`PAPER_PROFILE`) loads a local
Stable Diffusion directory and a local ControlNet directory, learns only the style LoRA and
samples with the paper's img2img settings. Kept free of torch so plugin discovery stays fast.

The settings shared with the other latent diffusion generators (autoencoder, text encoder,
optimiser, EMA, sampler, …) live in
:class:`saadi_core.diffusion.latent_options.LatentDiffusionOptions`; ``max_steps``,
``learning_rate``, ``batch_size`` and friends there configure the *control stage* (see
``docs/generators/simuscope.md``), the ``style_*`` fields below the style LoRA.
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

#: '{class}' becomes the classes the simulator label shows ("gallbladder, cystic duct and tool")
DEFAULT_PROMPT = "a realistic laparoscopic cholecystectomy frame showing {class}"

#: LoRA targets of the tiny style adapter: attention projections (the tiny UNet attends in its
#: mid block only) and the ResNet convolutions
TINY_STYLE_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]

ControlInput = Literal["frame", "edges", "labels"]
DPONetwork = Literal["unet", "controlnet", "both"]


class SimuScopeOptions(LatentDiffusionOptions):
    """Stable Diffusion UNet + style LoRA + ControlNet, img2img from simulator frames."""

    seed: int = Field(
        default=0,
        description="seed of weight initialisation, training randomness and condition selection",
    )
    prompt_template: str = Field(
        default=DEFAULT_PROMPT,
        description="text prompt of a frame; '{class}' is replaced by the classes its label shows, e.g. "
        "'gallbladder, cystic duct and tool' (underscores as spaces; the background name when nothing else shows)",
    )

    # ---- where the models come from
    pretrained: Path | None = Field(
        default=None,
        description="local diffusers Stable Diffusion directory (unet/, vae/, text_encoder/, tokenizer/, scheduler/); "
        "None builds a small UNet from the options below and trains it here",
    )
    controlnet: Path | None = Field(
        default=None,
        description="local diffusers ControlNet directory (config.json + weights) matching the UNet; None builds one "
        "from the UNet (ControlNetModel.from_unet) that the control stage trains",
    )
    control_input: ControlInput = Field(
        default="edges",
        description="what the ControlNet sees: 'frame' = the simulator frame, 'edges' = its soft edge map (the "
        "authors' soft-edge ControlNet), 'labels' = its label map in a fixed colour code",
    )
    control_scale: float = Field(
        default=1.0, ge=0, description="ControlNet conditioning scale (multiplies its residuals)"
    )
    control_embedding_channels: int = Field(
        default=16,
        ge=4,
        description="width of the first layer of a new ControlNet's conditioning encoder (doubles per downsampling)",
    )

    # ---- architecture when built from config
    block_out_channels: list[int] = Field(
        default_factory=lambda: [32, 64], description="UNet block_out_channels"
    )
    unet_attention: list[bool] = Field(
        default_factory=lambda: [False, False],
        description="cross-attention per UNet level (0 = full latent size); the mid block always attends",
    )

    # ---- diffusion
    prediction_type: PredictionType | None = Field(
        default="sample",
        description="network target; None keeps the pretrained scheduler's (required when building from config). "
        "tiny: 'sample' (x0), as for ssd/ssi",
    )

    # ---- control stage (ControlNet; with a model built from config also the UNet)
    max_steps: int = Field(
        default=400,
        ge=0,
        description="optimiser steps of the control stage on (simulator render of a training mask -> its real image) "
        "pairs; 0 = use the ControlNet as loaded (needs 'controlnet')",
    )
    learning_rate: float = Field(
        default=3e-3,
        gt=0,
        description="AdamW learning rate of the control stage (tiny: at 1e-3 a ControlNet trained from zero "
        "convolutions had not converged after 400 steps)",
    )
    control_dropout: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="share of control-stage examples trained without control, so a UNet trained here also denoises "
        "real frames on its own (what the style stage fine-tunes)",
    )
    random_flip: bool = Field(
        default=True, description="random horizontal/vertical flips of training pairs"
    )

    # ---- style stage (LoRA on the UNet, fused into it afterwards)
    n_style_frames: int = Field(
        default=100,
        ge=1,
        description="real training frames the style LoRA learns from (a seeded subset)",
    )
    style_steps: int = Field(
        default=100, ge=0, description="optimiser steps of the style LoRA; 0 = no style stage"
    )
    style_rank: int = Field(default=8, ge=1, description="rank of the style LoRA (alpha = rank)")
    style_learning_rate: float = Field(
        default=1e-3, gt=0, description="AdamW learning rate of the style LoRA"
    )
    style_target_modules: list[str] = Field(
        default_factory=lambda: list(TINY_STYLE_TARGETS),
        description="UNet layer names (suffixes) the style LoRA adapts",
    )

    # ---- conditions (simulator frames)
    simulator_dir: Path | None = Field(
        default=None,
        description="folder of simulator frames: frames/ + masks/ with the same file stems (index or palette PNG masks; "
        "an optional classes.yaml maps mask values or colours to the dataset's class names); None = the toy simulator "
        "renders the dataset's training masks",
    )
    n_conditions: int | None = Field(
        default=16,
        ge=1,
        description="simulator frames used as conditions (a seeded subset); None = all of them",
    )
    flip_copies: int = Field(
        default=0,
        ge=0,
        le=3,
        description="flipped copies of each simulator frame added as conditions (x, y, both)",
    )

    # ---- sampling (img2img)
    strength: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="img2img strength: the simulator frame's latent is noised to this share of the schedule and "
        "denoised from there (1 = from pure noise, the frame enters through the ControlNet only)",
    )
    sampling_steps: int = Field(
        default=8,
        ge=1,
        description="sampler steps of the full schedule; img2img runs the last round(strength x steps)",
    )

    # ---- alignment
    dpo_network: DPONetwork = Field(
        default="both",
        description="which network Diffusion-DPO's LoRA adapts: the UNet (style fused in), the ControlNet, or both "
        "(the module every prediction passes through)",
    )

    @model_validator(mode="after")
    def _control_source(self) -> SimuScopeOptions:
        if self.controlnet is None and self.max_steps == 0:
            raise ValueError(
                "a ControlNet built here starts with zero residuals and needs training: set 'controlnet' "
                "(a local ControlNet directory) or max_steps > 0"
            )
        return self


#: The paper's setting, from its authors: SD 1.5 with a style LoRA of rank 128 learnt for ~14k
#: steps on ~100 real frames (lr 1e-4, the usual SD LoRA rate), a *pretrained* soft-edge ControlNet
#: used as loaded (so the user sets ``pretrained`` and ``controlnet``; ``max_steps`` 0), text-guided
#: img2img with 30 steps and guidance 7.5. The img2img strength is not published; 0.6 keeps the
#: simulator's layout while repainting texture. 48 simulator frames as conditions.
PAPER_PROFILE: dict[str, Any] = {
    **PAPER_FINE_TUNING,
    "max_steps": 0,
    "control_input": "edges",
    "n_style_frames": 100,
    "style_steps": 14000,
    "style_rank": 128,
    "style_learning_rate": 1e-4,
    "style_target_modules": ["to_q", "to_k", "to_v", "to_out.0"],
    "strength": 0.6,
    "n_conditions": 48,
}
