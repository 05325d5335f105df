"""Options of the aligner kinds (light: pydantic only, no torch).

Every default is the ``tiny`` profile (embedded toy data on a CPU); ``paper`` overrides live next to
the registrations in ``plugin.py``. ``docs/dpo.md`` explains β, the defaults and the logged metrics.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from saadi_core.config import ComponentSpec

#: the tiny profile's LoRA targets (diffusers UNet names): attention projections + ResNet convs
TINY_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")
#: diffusion-dpo's real-image anchor when ``real_weight`` is left at None: chosen on tuning seed 10
#: as the largest oracle gain whose FID cost was not significant (docs/dpo.md)
AUTO_REAL_WEIGHT = 2.0


class LoraTrainingOptions(BaseModel):
    """What every LoRA aligner shares: adapter shape, optimiser, validation and checkpoint selection
    (``saadi_align.training``)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=200, ge=1, description="optimiser steps (paper: 1500)")
    batch_size: int = Field(
        default=8, ge=1, description="pairs (DPO) or samples per step and process"
    )
    lr: float = Field(
        default=3e-3,
        gt=0,
        description="AdamW learning rate of the LoRA weights (paper: 1e-5 on SD)",
    )
    weight_decay: float = Field(
        default=1e-2, ge=0, description="AdamW weight decay of the LoRA weights"
    )
    grad_clip: float = Field(default=1.0, gt=0, description="max global norm of the LoRA gradients")
    rank: int = Field(default=8, ge=1, description="LoRA rank")
    alpha: float | None = Field(default=None, gt=0, description="LoRA alpha; None = rank (scale 1)")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="LoRA dropout")
    target_modules: list[str] | None = Field(
        default_factory=lambda: list(TINY_TARGET_MODULES),
        description="layer names (suffixes) to adapt; None = the generator's default "
        "(DiffusionTarget.lora_target_modules, usually the attention projections). tiny: attention and the "
        "ResNet convolutions - the tiny UNets attend only in their mid block, where an attention-only adapter "
        "(8 k parameters) barely moved the samples",
    )
    seed: int | None = Field(
        default=None, description="seed of pair sampling, noise and timesteps; None = the run seed"
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="recompute activations in the backward pass (diffusers networks): less memory, ~30% slower steps",
    )
    encode_batch_size: int = Field(
        default=32, ge=1, description="samples per encode call when caching x0 and conditioning"
    )
    validate_every: int = Field(
        default=50, ge=1, description="steps between validations (if the run provides a validator)"
    )
    select_metric: str = Field(
        default="selector_pass", description="validation metric that picks the kept adapter state"
    )
    select_mode: Literal["max", "min"] = Field(
        default="max", description="whether a larger or smaller select_metric is better"
    )
    min_delta: float = Field(
        default=0.0,
        ge=0,
        description="improvement of select_metric (or of its lower bound) needed to count as better",
    )
    select_rule: Literal["lcb", "noninferior", "point"] = Field(
        default="lcb",
        description="'lcb': keep the state whose paired validation difference to the start (same seeds) has the "
        "largest one-sided lower confidence bound, and only if it is above 0; 'noninferior': keep the latest state "
        "unless that difference is significantly below 0 (for moves the selector cannot resolve); 'point': the "
        "best point value",
    )
    condition_guard: bool = Field(
        default=False,
        description="with select_rule 'lcb': also refuse a state when any one condition (class prompt or mask) got "
        "significantly worse on validation (its paired upper confidence bound below 0), whatever the total gain",
    )
    lcb_confidence: float = Field(
        default=0.9, gt=0.5, lt=1, description="one-sided confidence of the 'lcb' rule's bound"
    )
    validation_size: int | None = Field(
        default=320,
        ge=1,
        description="validation samples (over all conditions, same seeds every time); None = the run's size "
        "(tiny 80: ±5 points by chance, too few to see a DPO-sized move)",
    )
    patience: int = Field(
        default=3, ge=1, description="validations without improvement before stopping early"
    )
    mixed_precision: Literal["no", "bf16"] | None = Field(
        default=None,
        description="forward precision of the DPO step; None = the accelerate setting (`accelerate launch "
        "--mixed_precision bf16`). LoRA weights and the loss stay float32 either way",
    )

    @model_validator(mode="after")
    def _guard_needs_paired_selection(self) -> LoraTrainingOptions:
        # the guard compares each condition with the start seed for seed: only the paired rules pair them
        if self.condition_guard and self.select_rule == "point":
            raise ValueError("condition_guard needs a paired select_rule ('lcb' or 'noninferior')")
        return self


class DiffusionDPOOptions(LoraTrainingOptions):
    """``diffusion-dpo``: Diffusion-DPO (paper Eq. 4) on LoRA adapters of the generator's network."""

    batch_size: int = Field(
        default=8, ge=1, description="preference pairs per step and process (2× images per forward)"
    )
    steps: int = Field(
        default=600,
        ge=1,
        description="optimiser steps (paper: 1500). tiny: 600 - on toy-cls v2 (tuning seed 10) 200 steps moved the "
        "oracle pass by +1.0 points (p = 0.71), 600 steps by +4.2 (p = 0.07) at a smaller FID cost (docs/dpo.md)",
    )
    validate_every: int = Field(
        default=200,
        ge=1,
        description="steps between validations (if the run provides a validator); tiny: 200, so the 600 steps cost "
        "4 validations (the base and 3 candidates)",
    )
    beta: float = Field(
        default=5000.0,
        gt=0,
        description="Eq. 4's β (= beta_dpo / 2 of the diffusers example); 10³–10⁴ is normal for diffusion, "
        "smaller values align harder and drift more",
    )
    sft_weight: float = Field(
        default=1.0,
        ge=0,
        description="winner-likelihood (SFT) regulariser, relative to β: 0.5 doubles the pull towards the "
        "winners at initialisation; 0 = off (the paper's plain Eq. 4)",
    )
    condition_dropout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="share of pairs trained with the empty prompt (winner and loser alike), so the adapter also "
        "moves the unconditional prediction that classifier-free guidance subtracts; 0 = the conditional "
        "prediction only. Needs a generator whose DiffusionTarget has unconditional() (ssd, ssi)",
    )
    real_weight: float | None = Field(
        default=None,
        ge=0,
        description="real-image anchor, relative to β like sft_weight: every step also denoises batch_size real "
        "training images with this weight, pulling the adapter back towards the data while Eq. 4 pushes it "
        f"towards the winners. None (tiny) = {AUTO_REAL_WEIGHT:g} when the generator puts the real images under "
        "its own conditions (class prompts, training masks), else off, noted in the alignment's meta; "
        "0 = off (pairs only); > 0 = on, refused for a generator that cannot (docs/dpo.md)",
    )


class SFTWinnersOptions(LoraTrainingOptions):
    """``sft-winners``: rejection-sampling fine-tuning (RAFT-style) on the selector's winners."""

    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="h: pool samples scoring ≥ h are trained on; None = the pairing's threshold (0.5 without one)",
    )
    real_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="share of each batch drawn from the real training images (0 = winners only); real images "
        "alone, with no selector, are the `train-longer` aligner",
    )


class TrainLongerOptions(LoraTrainingOptions):
    """``train-longer``: the control arm - the same LoRA fine-tuning on the real training images only."""

    steps: int = Field(
        default=600, ge=1, description="optimiser steps; tiny: 600, diffusion-dpo's default"
    )
    batch_size: int = Field(
        default=16,
        ge=1,
        description="real images per step and process; tiny: 16, as many images as diffusion-dpo's 8 winners and "
        "8 anchor images",
    )
    validate_every: int = Field(
        default=200,
        ge=1,
        description="steps between validations; tiny: 200, diffusion-dpo's, so both keep a state by the same rule",
    )


class DiffusionKTOOptions(LoraTrainingOptions):
    """``diffusion-kto``: Diffusion-KTO (Li et al. 2024) on per-sample good/bad labels (score ≥ h)."""

    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="h: pool samples scoring ≥ h are desirable, < h undesirable; None = the pairing's threshold",
    )
    beta: float = Field(
        default=5000.0,
        gt=0,
        description="scale of the implicit reward β·(err_ref − err_θ), same units as diffusion-dpo's β",
    )
    desirable_weight: float = Field(
        default=1.0, gt=0, description="λ_D: loss weight of desirable samples"
    )
    undesirable_weight: float = Field(
        default=1.0, gt=0, description="λ_U: loss weight of undesirable samples"
    )
    balance: bool = Field(
        default=True,
        description="draw desirable and undesirable samples equally often (the pool is usually lopsided)",
    )


class IterativeOptions(BaseModel):
    """``iterative``: rounds of (retrain selector on real + aligned, re-score the original pool,
    re-pair, re-align) around an inner aligner (paper: "iterative refinement")."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(
        default=2, ge=1, description="alignment rounds (1 = the inner aligner alone)"
    )
    inner: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(kind="diffusion-dpo"),
        description="the aligner run in every round ({kind, options}); any registered aligner",
    )
    continue_from_previous: bool = Field(
        default=False,
        description="round k aligns the round-(k-1) generator instead of the base (paper: from base; docs/method.md)",
    )
    n_per_condition: int = Field(
        default=16,
        ge=1,
        description="aligned samples per condition used to retrain the selector each round",
    )
    pool: Literal["original", "on-policy"] = Field(
        default="original",
        description="'original': the paper's variant (retrain the selector on real + aligned samples, re-score the "
        "original pool); 'on-policy': draw each round's pool from the current aligned generator and score it "
        "with the run's selector",
    )
    pool_per_condition: int | None = Field(
        default=None,
        ge=1,
        description="on-policy pool samples per condition; None = as many as the original pool",
    )


class SequenceOptions(BaseModel):
    """``sequence``: aligners one after another, each starting from what the previous one kept."""

    model_config = ConfigDict(extra="forbid")

    aligners: list[ComponentSpec] = Field(
        default_factory=lambda: [
            ComponentSpec(kind="train-longer"),
            ComponentSpec(kind="diffusion-dpo"),
        ],
        min_length=1,
        description="the aligners in order ({kind, options} each; any registered aligner). The default asks "
        "whether preferences add anything to the train-longer control: DPO from the control's kept state",
    )
    pool: Literal["given", "on-policy"] = Field(
        default="given",
        description="'given': every part learns from the pipeline's pool (drawn from the base); 'on-policy': "
        "each part after the first draws a fresh pool from the previous part's kept state, scored with the "
        "run's selector and paired with the run's strategy",
    )
    pool_per_condition: int | None = Field(
        default=None,
        ge=1,
        description="on-policy pool samples per condition; None = as many as the pipeline's pool",
    )
