"""Registration of the first-party aligners (import-light: no torch, no implementation modules)."""

from __future__ import annotations

from typing import Any

from saadi_core import hookimpl


@hookimpl
def saadi_register_aligners(register: Any) -> None:
    register(
        "diffusion-dpo",
        "saadi_align.dpo:DiffusionDPO",
        options="saadi_align.options:DiffusionDPOOptions",
        description="Diffusion-DPO (SAADi Eq. 4) on LoRA adapters of any generator exposing a diffusion target; "
        "validated, keeps the best adapter state.",
        profiles={
            "paper": {
                "steps": 1500,
                "lr": 1e-5,
                "beta": 2500.0,
                "sft_weight": 0.0,
                "real_weight": 0.0,
                "batch_size": 4,
                "validate_every": 100,
                "target_modules": None,
                "validation_size": None,
            },
        },
    )
    lora_paper = {
        "steps": 1500,
        "lr": 1e-5,
        "batch_size": 4,
        "validate_every": 100,
        "target_modules": None,
        "validation_size": None,
    }
    register(
        "sft-winners",
        "saadi_align.sft:SFTWinners",
        options="saadi_align.options:SFTWinnersOptions",
        description="rejection-sampling fine-tuning (RAFT-style): LoRA on the pool samples scoring >= h with the plain "
        "diffusion loss, optionally mixed with real images; validated like diffusion-dpo.",
        profiles={"paper": lora_paper},
    )
    register(
        "train-longer",
        "saadi_align.sft:TrainLonger",
        options="saadi_align.options:TrainLongerOptions",
        description="the control arm: the same LoRA fine-tuning on the real training images alone (no selector, no "
        "pool), so an aligner's gain over base can be split into training longer and the preference signal.",
        profiles={"paper": lora_paper},
    )
    register(
        "diffusion-kto",
        "saadi_align.kto:DiffusionKTO",
        options="saadi_align.options:DiffusionKTOOptions",
        description="Diffusion-KTO (Li et al. 2024): per-sample good/bad labels from h, no pairing; LoRA, validated "
        "like diffusion-dpo.",
        profiles={"paper": lora_paper | {"beta": 2500.0}},
    )
    register(
        "iterative",
        "saadi_align.iterative:IterativeAligner",
        options="saadi_align.options:IterativeOptions",
        description="Iterative refinement: retrain the selector on real + aligned samples, re-score the original "
        "pool, re-pair and realign, for N rounds.",
        profiles={"paper": {"n_per_condition": 100}},
    )
    register(
        "sequence",
        "saadi_align.sequence:SequenceAligner",
        options="saadi_align.options:SequenceOptions",
        description="aligners one after another, each from the previous one's kept state (folded into the "
        "weights: it is the next one's reference and the state its validation must beat); default "
        "train-longer then diffusion-dpo",
    )
