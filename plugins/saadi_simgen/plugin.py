"""Registers the ``simgen`` generator (joint image + mask diffusion after SimGen).

Lazy by contract: this module imports neither torch nor the implementation; the registry
imports ``saadi_simgen.generator`` only when a run builds the generator.
"""

from __future__ import annotations

from typing import Any

from saadi_core import hookimpl
from saadi_simgen.options import PAPER_PROFILE


@hookimpl
def saadi_register_generators(register: Any) -> None:
    register(
        "simgen",
        "saadi_simgen.generator:SimGenGenerator",
        options="saadi_simgen.options:SimGenOptions",
        description="SimGen: one DDPM generates image and segmentation mask together (6-channel image + "
        "Fibonacci-lattice colour-coded mask, decoded by cosine similarity); unconditional or class-presence "
        "conditioned; tiny: small UNet2DModel trained here on the pixel-unshuffled joint tensor; paper: 256 px ResUNet",
        profiles={"paper": PAPER_PROFILE},
        task="segmentation",
    )
