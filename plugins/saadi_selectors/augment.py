"""Batched, seeded data augmentation for selector training.

Augmenting a whole batch at once (flips and 90° turns by indexing, the affine warp through one
``grid_sample``) keeps CPU training fast and, because every random number comes from the
caller's ``torch.Generator``, makes training reproducible for a seed. Masks get exactly the same
geometry as their images (nearest-neighbour sampling, so class ids stay integers).

Colour jitter is opt-in: toy classes differ by shape only, but real organ classes partly differ
by colour, and a strong jitter would erase that cue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation; zero (or ``False``) switches one off."""

    flips: bool = True
    rot90: bool = True
    degrees: float = 10.0
    translate: float = 0.05
    scale: float = 0.1
    color_jitter: float = 0.0


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def _where(flag: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample choice between ``a`` and ``b`` (``flag``: bool ``(N,)``)."""
    return torch.where(flag.view(-1, *([1] * (a.dim() - 1))).to(a.device), a, b)


def _flip_and_turn(
    images: torch.Tensor, masks: torch.Tensor | None, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    n = images.shape[0]
    if cfg.flips:
        for dim_offset in (1, 2):  # horizontal, then vertical
            flag = torch.rand(n, generator=generator) < 0.5
            images = _where(flag, images.flip(-dim_offset), images)
            if masks is not None:
                masks = _where(flag, masks.flip(-dim_offset), masks)
    if (
        cfg.rot90 and images.shape[-1] == images.shape[-2]
    ):  # a 90° turn of a non-square image changes its size
        turns = torch.randint(0, 4, (n,), generator=generator)
        for k in (1, 2, 3):
            flag = turns == k
            images = _where(flag, torch.rot90(images, k, dims=(-2, -1)), images)
            if masks is not None:
                masks = _where(flag, torch.rot90(masks, k, dims=(-2, -1)), masks)
    return images, masks


def _affine(
    images: torch.Tensor, masks: torch.Tensor | None, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    n = images.shape[0]
    angle = _uniform(n, -cfg.degrees, cfg.degrees, generator) * (math.pi / 180.0)
    zoom = _uniform(n, 1.0 - cfg.scale, 1.0 + cfg.scale, generator)
    # affine_grid works in [-1, 1] coordinates, so a shift of t (share of the size) is 2t there
    shift = _uniform(2 * n, -2 * cfg.translate, 2 * cfg.translate, generator).view(n, 2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(
        theta.to(images.device, images.dtype), list(images.shape), align_corners=False
    )
    images = F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    if masks is not None:
        warped = F.grid_sample(
            masks[:, None].to(images.dtype),
            grid,
            mode="nearest",
            padding_mode="reflection",
            align_corners=False,
        )
        masks = warped[:, 0].round().to(masks.dtype)
    return images, masks


def _color_jitter(
    images: torch.Tensor, strength: float, generator: torch.Generator
) -> torch.Tensor:
    """Brightness, contrast and saturation factors in ``[1 - strength, 1 + strength]``."""
    n = images.shape[0]
    shape = (n, 1, 1, 1)
    x = (images + 1.0) / 2.0
    factors = [
        _uniform(n, 1.0 - strength, 1.0 + strength, generator).view(shape).to(images.device)
        for _ in range(3)
    ]
    x = x * factors[0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factors[1] + mean
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * factors[2] + gray
    return x.clamp(0.0, 1.0) * 2.0 - 1.0


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor | None, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Randomly augment ``images`` (``float (N, 3, H, W)`` in ``[-1, 1]``) and, with the same
    geometry, ``masks`` (``(N, H, W)`` integer class ids). ``generator`` is a CPU generator."""
    images, masks = _flip_and_turn(images, masks, cfg, generator)
    if cfg.degrees > 0 or cfg.translate > 0 or cfg.scale > 0:
        images, masks = _affine(images, masks, cfg, generator)
    if cfg.color_jitter > 0:
        images = _color_jitter(images, cfg.color_jitter, generator)
    return images, masks
