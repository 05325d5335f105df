"""SPADE: spatially-adaptive normalisation, the way CASDM's decoder reads the segmentation map.

A plain normalisation layer washes the layout out of the features (GroupNorm of a region of one
class looks like any other); SPADE normalises *without* a learned affine and then modulates every
position with a scale γ(m) and a shift β(m) computed from the mask ``m`` at that position, so the
layout re-enters at every decoder block (Park et al. 2019, used for diffusion by SDM and CASDM).

How the mask reaches a feature map of another size (a choice the papers leave open):
:func:`mask_pyramid_input` gives each level the one-hot map *space-to-depth* encoded — a
``r × r`` cell of the mask becomes ``K·r²`` channels of one feature position — so a one-pixel
artery is still visible, and where, at a 4× or 8× coarser level (nearest-neighbour resizing, as in
SPADE/SDM, drops it). Beyond ``detail`` pixels per side the cell is area-averaged first, which
keeps the channel count bounded for large images.

The mask features of a level are computed once per forward by a :class:`MaskEncoder` and shared
by every :class:`SpatiallyAdaptiveNorm` of that level; each norm only owns its γ and β convolutions
(zero-initialised, so an untrained block starts as a plain normalisation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def one_hot_masks(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class ids ``(N, H, W)`` -> float one-hot ``(N, K, H, W)``."""
    return F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()


def mask_pyramid_input(one_hot: torch.Tensor, size: int, detail: int) -> torch.Tensor:
    """The one-hot mask ``(N, K, H, W)`` as input for a feature map of ``size × size``:
    ``(N, K·d², size, size)`` with ``d = min(H / size, detail)`` — area-averaged to ``size·d``,
    then space-to-depth by ``d``."""
    full = int(one_hot.shape[-1])
    if full % size:
        raise ValueError(f"mask size {full} is not a multiple of the feature size {size}")
    d = max(1, min(full // size, detail))
    pooled = F.adaptive_avg_pool2d(one_hot, size * d) if size * d != full else one_hot
    return F.pixel_unshuffle(pooled, d) if d > 1 else pooled


def mask_input_channels(num_classes: int, ratio: int, detail: int) -> int:
    """Channels :func:`mask_pyramid_input` gives a level ``ratio`` times coarser than the mask."""
    return num_classes * max(1, min(ratio, detail)) ** 2


class MaskEncoder(nn.Module):
    """The mask features of one decoder level: ``conv3x3 -> SiLU`` on the level's mask input."""

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden_channels, 3, padding=1)

    def forward(self, mask_input: torch.Tensor) -> torch.Tensor:
        return F.silu(self.conv(mask_input))


class SpatiallyAdaptiveNorm(nn.Module):
    """``GroupNorm(x)`` without affine, then ``· (1 + γ(m)) + β(m)`` from the level's mask features."""

    def __init__(self, channels: int, hidden_channels: int, groups: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=eps, affine=False)
        self.gamma = nn.Conv2d(hidden_channels, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden_channels, channels, 3, padding=1)
        for conv in (self.gamma, self.beta):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * (1.0 + self.gamma(mask_features)) + self.beta(mask_features)


class SPADEResBlock(nn.Module):
    """A decoder ResNet block whose two normalisations are SPADE: ``SPADE -> SiLU -> conv1 (+ time
    embedding) -> SPADE -> SiLU -> dropout -> conv2``, plus a (1×1-projected) shortcut.

    The convolutions are named ``conv1``/``conv2`` like diffusers' ``ResnetBlock2D``, so the LoRA
    target names the aligners use for diffusers UNets find them here too.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        hidden_channels: int,
        groups: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = SpatiallyAdaptiveNorm(in_channels, hidden_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = SpatiallyAdaptiveNorm(out_channels, hidden_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, mask_features: torch.Tensor
    ) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, mask_features)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h, mask_features))))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h
