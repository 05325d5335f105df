"""Class ids as colours on the unit sphere (SimGen's Canonical Fibonacci Lattice) and back.

Why colours at all: SimGen denoises the image and its mask as *one* continuous 6-channel tensor,
so the discrete mask has to become three continuous channels. Writing class ``k`` as the grey
level ``k / K`` puts neighbouring classes a hair apart and a little denoising error flips them;
random RGB colours can land two classes close together. The Canonical Fibonacci Lattice spreads
``K`` points almost uniformly over the unit sphere, so every class is as far as possible from
every other one, and a point is a direction: decoding compares *directions* (cosine similarity
with each class colour, the nearest wins), which ignores a generated pixel's overall scale.

The lattice (written here from its definition): point ``i`` of ``n`` has height
``z_i = 1 − (2i + 1) / n`` — equal-area bands, offset by half a band so no point sits on a pole —
and longitude ``φ_i = i · π (3 − √5)``, the golden angle, which never lines successive points
up; ``(x, y) = √(1 − z²) (cos φ, sin φ)``. Every coordinate lies in ``[−1, 1]``, the value range
of the image channels, so the mask needs no rescaling next to the image.

Masks are ``int64`` class ids (``(H, W)`` or ``(N, H, W)``); colour-coded masks are ``float32``
``(3, H, W)`` / ``(N, 3, H, W)``. :func:`decode_mask` also returns each pixel's best cosine
similarity: 1 for a clean colour, lower for a pixel between classes — :func:`clean_fraction` of
a generated mask says how cleanly the network painted it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: a generated mask pixel counts as "clean" when its colour is within ~26° of a class colour
CLEAN_SIMILARITY = 0.9

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def fibonacci_lattice(n: int) -> np.ndarray:
    """``n`` unit vectors ``float64 (n, 3)`` of the canonical Fibonacci lattice (row ``k`` is the
    colour of class ``k``)."""
    if n < 1:
        raise ValueError("the lattice needs at least one point")
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    radius = np.sqrt(np.clip(1.0 - z**2, 0.0, None))
    phi = i * _GOLDEN_ANGLE
    return np.stack([radius * np.cos(phi), radius * np.sin(phi), z], axis=1)


def palette(num_classes: int) -> torch.Tensor:
    """The class colours ``float32 (num_classes, 3)`` in ``[-1, 1]``."""
    return torch.from_numpy(fibonacci_lattice(num_classes)).float()


def min_separation_degrees(colours: torch.Tensor) -> float:
    """The smallest angle between two class colours (180 for a single class): how much a
    generated colour may drift before it can be read as another class."""
    if colours.shape[0] < 2:
        return 180.0
    unit = colours / colours.norm(dim=1, keepdim=True)
    cosine = (unit @ unit.T).clamp(-1.0, 1.0)
    cosine.fill_diagonal_(-1.0)
    return math.degrees(math.acos(float(cosine.max())))


def encode_mask(mask: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Class ids ``(…, H, W)`` -> colours ``float32 (…, 3, H, W)``."""
    coded = colours.to(mask.device)[mask.long()]  # (..., H, W, 3)
    return coded.movedim(-1, -3).contiguous()


def decode_mask(coded: torch.Tensor, colours: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Colours ``(…, 3, H, W)`` -> (class ids ``int64 (…, H, W)``, best cosine similarity
    ``float32 (…, H, W)``): each pixel takes the class whose colour points the same way."""
    unit = colours.to(coded.device, torch.float32)
    unit = unit / unit.norm(dim=1, keepdim=True)
    pixels = coded.float().movedim(-3, -1)  # (..., H, W, 3)
    pixels = pixels / pixels.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    similarity, labels = (pixels @ unit.T).max(dim=-1)
    return labels.long(), similarity


def clean_fraction(similarity: torch.Tensor, threshold: float = CLEAN_SIMILARITY) -> float:
    """Share of pixels whose colour is within ``threshold`` cosine similarity of a class colour."""
    return float((similarity >= threshold).float().mean()) if similarity.numel() else 1.0


def noisy_decode_accuracy(
    mask: torch.Tensor, colours: torch.Tensor, sigma: float, seed: int = 0
) -> float:
    """Pixel accuracy of decoding ``mask``'s colours after adding Gaussian noise of std ``sigma``
    per channel (seeded): the coding's margin against imperfect generation."""
    coded = encode_mask(mask, colours)
    noise = torch.randn(coded.shape, generator=torch.Generator().manual_seed(seed))
    labels, _ = decode_mask(coded + sigma * noise, colours)
    return float((labels == mask).float().mean())
