"""The regression target of a diffusion network for a scheduler's ``prediction_type``.

Generator training and Diffusion-DPO must compare the network output with the *same* target, or
DPO's "error on the winner vs the reference" would measure something the generator was never
trained for. Both call :func:`training_target`.
"""

from __future__ import annotations

from typing import Any

import torch


def training_target(
    scheduler: Any, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """``noise`` for epsilon-prediction, ``x0`` for sample-prediction, the velocity
    ``alpha_t * noise - sigma_t * x0`` for v-prediction (via the diffusers scheduler)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return x0
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)
    raise ValueError(f"unsupported prediction_type '{kind}' (epsilon, sample or v_prediction)")
