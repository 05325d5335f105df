"""The image model of a ``casdm`` generator and its saved layout.

One :class:`CASDMModel` = the :class:`~saadi_casdm.network.SemanticUNet`, the pixel-unshuffle
"autoencoder" between images and the network's grid (lossless, parameter-free; factor 1 = pixel
space) and the training ``DDPMScheduler``. Saved as::

    casdm.json      format, resolution, class names, output image size, training history summary
    network/        the SemanticUNet sampling weights (the EMA average) - diffusers format
    scheduler/      the training DDPMScheduler config (prediction_type, betas)
    autoencoder/    the pixel-unshuffle config
    layout/         the layout model, when one was trained (see saadi_casdm.layout)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saadi_casdm.network import SemanticUNet
from saadi_casdm.options import CASDMOptions
from saadi_core.diffusion.builders import (
    PixelUnshuffleAutoencoder,
    build_noise_scheduler,
    load_autoencoder,
    quiet_hf_progress,
)
from saadi_core.diffusion.saved import load_parts, read_record, write_record
from saadi_core.errors import ConfigError, DataError

FORMAT = 1
META_FILE = "casdm.json"


@dataclass
class CASDMModel:
    """What sampling, training and the DiffusionTarget view need."""

    network: SemanticUNet
    autoencoder: PixelUnshuffleAutoencoder
    noise_scheduler: Any
    resolution: int

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.resolution // self.autoencoder.factor
        return (self.autoencoder.latent_channels, size, size)

    @property
    def num_classes(self) -> int:
        return int(self.network.config.num_classes)

    def to(self, device: str | torch.device) -> CASDMModel:
        self.network.to(device)
        return self

    def freeze(self) -> CASDMModel:
        self.network.requires_grad_(False).eval()
        return self


def check_resolution(resolution: int, factor: int, levels: int) -> None:
    multiple = factor * 2 ** (levels - 1)
    if resolution % multiple:
        raise ConfigError(
            f"casdm option 'resolution' ({resolution}) must be a multiple of {multiple} "
            f"(unshuffle_factor {factor} x UNet downsampling {2 ** (levels - 1)})"
        )


def build_model(options: CASDMOptions, num_classes: int, resolution: int) -> CASDMModel:
    """A random-initialised model (seeded by ``options.seed``, global RNG untouched)."""
    check_resolution(resolution, options.unshuffle_factor, len(options.block_out_channels))
    autoencoder = PixelUnshuffleAutoencoder(options.unshuffle_factor)
    channels = autoencoder.latent_channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        network = SemanticUNet(
            in_channels=channels,
            out_channels=channels,
            num_classes=num_classes,
            block_out_channels=tuple(options.block_out_channels),
            layers_per_block=options.layers_per_block,
            norm_num_groups=options.norm_num_groups,
            mask_hidden_channels=options.mask_hidden_channels,
            mask_factor=options.unshuffle_factor,
            mask_detail=options.mask_detail,
            attention=options.attention,
            attention_head_dim=options.attention_head_dim,
            dropout=options.dropout,
        )
    scheduler = build_noise_scheduler(
        num_train_timesteps=options.num_train_timesteps,
        beta_schedule=options.beta_schedule,
        prediction_type=options.prediction_type,
        clip_sample=True,  # images (and their unshuffled cells) live in [-1, 1]
    )
    return CASDMModel(network, autoencoder, scheduler, resolution)


def save_model(model: CASDMModel, path: Path, meta: dict[str, Any]) -> None:
    """Write the base model and the generator's ``meta`` into ``path``. Adapters belong to the
    aligner, which saves them itself."""
    if getattr(model.network, "peft_config", None):
        raise RuntimeError(
            "casdm.save writes base weights only; remove adapters first (the aligner saves its own)"
        )
    path.mkdir(parents=True, exist_ok=True)
    with quiet_hf_progress():
        model.network.save_pretrained(path / "network")
        model.noise_scheduler.save_pretrained(path / "scheduler")
        model.autoencoder.save_pretrained(path / "autoencoder")
    write_record(path, META_FILE, {"format": FORMAT, "resolution": model.resolution, **meta})


def load_model(path: Path) -> tuple[CASDMModel, dict[str, Any]]:
    """Restore what :func:`save_model` wrote; returns the (frozen) model and the meta."""
    from diffusers import DDPMScheduler

    path = Path(path)
    record = read_record(
        path, META_FILE, FORMAT, "casdm", parts=("network", "scheduler", "autoencoder")
    )
    parts = load_parts(path, {"network": SemanticUNet, "scheduler": DDPMScheduler})
    network, scheduler = parts["network"], parts["scheduler"]
    autoencoder = load_autoencoder(path / "autoencoder")
    if not isinstance(autoencoder, PixelUnshuffleAutoencoder):
        raise DataError(
            f"saved casdm generator {path}: autoencoder/ is not a pixel-unshuffle config"
        )
    resolution = int(record.pop("resolution"))
    record.pop("format")
    return CASDMModel(network, autoencoder, scheduler, resolution).freeze(), record
