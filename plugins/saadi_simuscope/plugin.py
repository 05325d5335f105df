"""Registers the ``simuscope`` generator (simulator frame -> realistic frame).

Lazy by contract: this module imports neither torch nor the implementation; the registry
imports ``saadi_simuscope.generator`` only when a run builds the generator.
"""

from __future__ import annotations

from typing import Any

from saadi_core import hookimpl
from saadi_simuscope.options import PAPER_PROFILE


@hookimpl
def saadi_register_generators(register: Any) -> None:
    register(
        "simuscope",
        "saadi_simuscope.generator:SimuScopeGenerator",
        options="saadi_simuscope.options:SimuScopeOptions",
        description="SimuScope: text-guided img2img from labelled simulator frames with an SD UNet + style LoRA + "
        "ControlNet, keeping the simulator's label; tiny: toy-simulator renders of the training masks, models trained "
        "here; paper: local SD + ControlNet directories, style LoRA learnt here",
        profiles={"paper": PAPER_PROFILE},
        task="segmentation",
    )
