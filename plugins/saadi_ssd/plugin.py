"""Registers the ``ssd`` generator (Surgical Stable Diffusion).

Lazy by contract: this module imports neither torch nor the implementation; the registry
imports ``saadi_ssd.generator`` only when a run builds the generator.
"""

from __future__ import annotations

from typing import Any

from saadi_core import hookimpl
from saadi_ssd.options import PAPER_PROFILE


@hookimpl
def saadi_register_generators(register: Any) -> None:
    register(
        "ssd",
        "saadi_ssd.generator:SSDGenerator",
        options="saadi_ssd.options:SSDOptions",
        description="Surgical Stable Diffusion: class-prompted latent diffusion (diffusers UNet + CLIP text encoder); "
        "tiny: small model trained here on pixel-unshuffled latents; paper: fine-tunes a local SD directory",
        profiles={"paper": PAPER_PROFILE},
        task="classification",
    )
