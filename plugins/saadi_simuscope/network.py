"""The denoiser of SimuScope: a Stable Diffusion UNet steered by a ControlNet, as one module.

:class:`ControlledUNet` runs the ControlNet on the control image and adds its residuals to the
UNet's skip connections and mid block (``control_scale`` × residuals), exactly as diffusers'
ControlNet pipelines do. Sampling, training and Diffusion-DPO's ``predict`` all call this one
forward, so LoRA adapters an aligner places on the UNet, the ControlNet or both are used
everywhere.

A ControlNet comes from a local diffusers directory (:func:`load_controlnet`, the ``paper``
profile's pretrained soft-edge ControlNet) or is built from the UNet (:func:`build_controlnet`:
``ControlNetModel.from_unet`` copies the UNet's encoder, and its zero-initialised output
convolutions make it start as "no control"). Its conditioning encoder downsamples the control
image by the autoencoder's factor, so the residuals meet the latent grid.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from saadi_core.diffusion.builders import quiet_hf_progress
from saadi_core.errors import ConfigError, DataError


class ControlledUNet(nn.Module):
    """UNet + ControlNet: ``forward(x_t, t, encoder_hidden_states, control) -> prediction``.

    ``control_scale`` is a float or a per-row tensor ``(N, 1, 1, 1)`` (0 switches control off for
    that row, as the control stage's control dropout does).
    """

    def __init__(self, unet: Any, controlnet: Any) -> None:
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        control: torch.Tensor,
        control_scale: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        down, mid = self.controlnet(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            controlnet_cond=control.to(sample.dtype),
            conditioning_scale=control_scale,
            return_dict=False,
        )
        return self.unet(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample


def conditioning_channels(factor: int, base: int) -> tuple[int, ...]:
    """Widths of a ControlNet conditioning encoder that downsamples by ``factor`` (a power of 2):
    one stride-2 stage per halving, doubling the width each time."""
    levels = round(math.log2(factor))
    if 2**levels != factor:
        raise ConfigError(
            f"simuscope: the autoencoder factor {factor} is not a power of 2, which a ControlNet needs"
        )
    return tuple(base * 2**i for i in range(levels + 1))


def build_controlnet(unet: Any, factor: int, base_channels: int, seed: int) -> Any:
    """A ControlNet copied from ``unet``'s encoder, reading 3-channel control images ``factor``
    times the latent size (its new layers seeded by ``seed``)."""
    from diffusers import ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ControlNetModel.from_unet(
            unet,
            conditioning_embedding_out_channels=conditioning_channels(factor, base_channels),
            conditioning_channels=3,
        )


def load_controlnet(path: Path, unet: Any, factor: int) -> Any:
    """A pretrained ControlNet from a local diffusers directory, checked against ``unet``."""
    from diffusers import ControlNetModel

    root = Path(path).expanduser().resolve()
    if not (root / "config.json").is_file():
        raise DataError(
            f"simuscope option 'controlnet': no diffusers ControlNet (config.json) in {root}"
        )
    with quiet_hf_progress():
        controlnet = ControlNetModel.from_pretrained(root)
    mismatch = [
        key
        for key in ("in_channels", "block_out_channels", "cross_attention_dim")
        if list(_as_list(controlnet.config[key])) != list(_as_list(unet.config[key]))
    ]
    if mismatch:
        raise ConfigError(
            f"simuscope option 'controlnet': {root} does not fit the UNet ({', '.join(mismatch)} differ)"
        )
    embedding = controlnet.config.conditioning_embedding_out_channels
    if 2 ** (len(embedding) - 1) != factor:
        raise ConfigError(
            f"simuscope option 'controlnet': {root} reads control images {2 ** (len(embedding) - 1)}x the latent size, "
            f"but the autoencoder's factor is {factor}"
        )
    return controlnet


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]
