"""Options every latent diffusion generator of the toolkit shares (SSD, SSI, …).

Those generators are one model family — a diffusers ``UNet2DConditionModel`` denoising autoencoder
latents under cross-attention to CLIP text states, built from config on a CPU (``tiny``) or
fine-tuned from a local Stable Diffusion directory (``paper``) — so most of their settings mean
the same thing and validate the same way. :class:`LatentDiffusionOptions` holds those; each
generator's ``Options`` subclasses it, sets its own defaults and adds its own fields.

Kept free of torch: plugin registration imports the options modules, and ``saadi --help`` /
``saadi plugins`` must stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from saadi_core.options import GeneratorOptions

PredictionType = Literal["epsilon", "v_prediction", "sample"]


class LatentDiffusionOptions(GeneratorOptions):
    """Settings of a text-conditioned latent diffusion model, its training and its sampling.

    A field declared here with a type only (``prompt_template``, ``block_out_channels``,
    ``unet_attention``, ``prediction_type``, ``max_steps``, ``random_flip``, ``sampling_steps``)
    has no shared default: each generator declares it again with its own default, description
    and constraints. Any other field can be declared again the same way by a generator whose
    default should differ (pydantic replaces the whole field, so restate its constraints);
    validators here still apply to it.
    """

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(
        default=0, description="seed of weight initialisation and training randomness"
    )
    prompt_template: str

    # ---- where the model comes from
    pretrained: Path | None = Field(
        default=None,
        description="local diffusers Stable Diffusion directory (unet/, vae/, text_encoder/, tokenizer/, scheduler/); "
        "None (or 'none') builds a small model from the options below. A generator that ships embedded weights "
        "also accepts 'embedded' (docs/pretraining.md)",
    )
    autoencoder: Literal["pixel-unshuffle", "kl"] = Field(
        default="pixel-unshuffle",
        description="'pixel-unshuffle': fixed lossless space-to-depth (no training, tiny profile); "
        "'kl': a diffusers AutoencoderKL loaded from pretrained/vae or autoencoder_path",
    )
    autoencoder_path: Path | None = Field(
        default=None, description="local AutoencoderKL directory (overrides pretrained/vae)"
    )
    unshuffle_factor: int = Field(
        default=4,
        ge=1,
        description="pixel-unshuffle factor f: 64x64x3 images become (64/f)x(64/f)x(3f^2) latents",
    )
    resolution: int | None = Field(
        default=None,
        ge=8,
        description="training/sampling size; None = the dataset's size (or the pretrained model's native size)",
    )

    # ---- architecture when built from config
    block_out_channels: list[int]
    unet_attention: list[bool]
    layers_per_block: int = Field(default=1, ge=1)
    attention_head_dim: int = Field(default=32, ge=1, description="attention head dimension")
    norm_num_groups: int = Field(
        default=32, ge=1, description="GroupNorm groups (must divide every channel count)"
    )
    text_hidden_size: int = Field(
        default=64, ge=8, description="CLIP text encoder width (= UNet cross_attention_dim)"
    )
    text_layers: int = Field(default=2, ge=1)
    text_heads: int = Field(default=4, ge=1)

    # ---- diffusion
    num_train_timesteps: int = Field(default=1000, ge=10)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field(
        default="squaredcos_cap_v2",
        description="noise schedule when built from config (pretrained keeps its own)",
    )
    prediction_type: PredictionType | None

    # ---- training
    max_steps: int
    batch_size: int = Field(default=32, ge=1, description="per-process batch size")
    learning_rate: float = Field(default=1e-3, gt=0)
    lr_warmup_steps: int = Field(default=50, ge=0)
    lr_scheduler: Literal["constant_with_warmup", "cosine", "linear"] = Field(
        default="constant_with_warmup",
        description="learning-rate schedule after the warm-up (diffusers' names): constant, or decayed to 0 "
        "at max_steps along a half cosine or a line",
    )
    weight_decay: float = Field(default=1e-2, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    train_text_encoder: bool = Field(
        default=True, description="train the text encoder jointly with the UNet"
    )
    prompt_dropout: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="probability of training on the empty prompt (enables classifier-free guidance)",
    )
    ema_decay: float = Field(
        default=0.999,
        ge=0,
        lt=1,
        description="max EMA decay of the trained weights; 0 disables EMA",
    )
    ema_power: float = Field(
        default=0.75, gt=0, description="EMA warm-up: decay at step k = 1 - (1 + k)^-power (capped)"
    )
    random_flip: bool
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto", description="'auto' = bf16 on a CUDA device that supports it, else fp32"
    )
    gradient_checkpointing: bool = Field(default=False)
    log_every: int = Field(default=25, ge=1, description="training steps per progress log event")

    # ---- sampling
    sampler: Literal["ddim", "dpm-solver++"] = Field(
        default="ddim", description="deterministic sampler (DDIM eta=0 or DPM-Solver++)"
    )
    sampling_steps: int
    guidance_scale: float = Field(
        default=1.0, ge=0, description="classifier-free guidance scale; 1 = no guidance"
    )
    sample_batch_size: int = Field(
        default=16,
        ge=1,
        description="fixed internal batch size of sampling (samples are bit-identical for a given value)",
    )

    @field_validator("pretrained", mode="before")
    @classmethod
    def _none_word(cls, value: Any) -> Any:
        """``pretrained: none`` in YAML (or ``--set ...pretrained=none``) means no pretrained weights."""
        return (
            None
            if isinstance(value, str) and value.strip().lower() in ("none", "null", "")
            else value
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
    def _consistent(self) -> LatentDiffusionOptions:
        if len(self.block_out_channels) != len(self.unet_attention):
            raise ValueError("block_out_channels and unet_attention must have the same length")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError("every block_out_channels entry must be divisible by norm_num_groups")
        if self.text_hidden_size % self.text_heads:
            raise ValueError("text_hidden_size must be divisible by text_heads")
        return self


#: the paper's Stage 1 recipe shared by its generators: fine-tune a local Stable Diffusion
#: directory (the user sets ``pretrained``) for 3000 AdamW steps and sample with 30 steps. Values
#: the paper leaves open: lr 1e-5 (the usual SD fine-tuning rate), batch 8 with gradient
#: checkpointing, frozen text encoder, no EMA (3000 steps at lr 1e-5 barely move a 0.9999
#: average), 10 % prompt dropout and guidance 7.5 (SD's pipeline default). Each generator's
#: ``paper`` profile starts from it.
PAPER_FINE_TUNING: dict[str, Any] = {
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
    "sampling_steps": 30,
    "guidance_scale": 7.5,
    "sample_batch_size": 8,
    "log_every": 50,
}
