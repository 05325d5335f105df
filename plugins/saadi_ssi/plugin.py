"""Registers the ``ssi`` generator (Surgical Stable Inpaint).

Lazy by contract: this module imports neither torch nor the implementation; the registry
imports ``saadi_ssi.generator`` only when a run builds the generator.
"""

from __future__ import annotations

from typing import Any

from saadi_core import hookimpl
from saadi_ssi.options import PAPER_PROFILE


@hookimpl
def saadi_register_generators(register: Any) -> None:
    register(
        "ssi",
        "saadi_ssi.generator:SSIGenerator",
        options="saadi_ssi.options:SSIOptions",
        description="Surgical Stable Inpaint: mask-conditioned latent inpainting, region by region with class prompts "
        "(paper Eq. 2 blend); tiny: small model trained here on pixel-unshuffled latents; paper: fine-tunes a local "
        "SD inpainting directory",
        profiles={"paper": PAPER_PROFILE},
        task="segmentation",
    )
