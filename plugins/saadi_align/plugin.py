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
                "batch_size": 4,
                "validate_every": 100,
                "target_modules": None,
            },
        },
    )
    register(
        "iterative",
        "saadi_align.iterative:IterativeAligner",
        options="saadi_align.options:IterativeOptions",
        description="Iterative refinement: retrain the selector on real + aligned samples, re-score the original "
        "pool, re-pair and realign, for N rounds.",
        profiles={"paper": {"n_per_condition": 100}},
    )
