"""Registers the ``casdm`` generator (Class-Aware Semantic Diffusion Model).

Lazy by contract: this module imports neither torch nor the implementation; the registry
imports ``saadi_casdm.generator`` only when a run builds the generator.
"""

from __future__ import annotations

from typing import Any

from saadi_casdm.options import PAPER_PROFILE
from saadi_core import hookimpl


@hookimpl
def saadi_register_generators(register: Any) -> None:
    register(
        "casdm",
        "saadi_casdm.generator:CASDMGenerator",
        options="saadi_casdm.options:CASDMOptions",
        description="Class-Aware Semantic Diffusion Model: whole images for segmentation masks through a SPADE decoder, "
        "class-aware MSE + self-perceptual loss, DPM-Solver++; optional text-prompted layout generator for new masks; "
        "tiny: small model trained here on pixel-unshuffled images; paper: 256 px pixel space, the paper's recipe",
        profiles={"paper": PAPER_PROFILE},
        task="segmentation",
    )
