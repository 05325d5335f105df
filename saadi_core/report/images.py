"""Sample thumbnails as PNG bytes: the image, optionally with its mask's class outlines.

Thumbnails are the exact generated pixels (upscaled by whole pixels, no smoothing) so a reader
judges what the selector and the oracle judged. For segmentation the outline of the mask the
sample was conditioned on (or generated with) is drawn on top: whether the image respects the
layout is the question alignment is meant to answer.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

#: outline colour per class id (id 0 = background is never drawn itself); cycles past ten
PALETTE = np.array(
    [
        [0, 0, 0],
        [255, 221, 0],
        [0, 200, 255],
        [255, 80, 200],
        [120, 255, 90],
        [255, 140, 0],
        [160, 110, 255],
        [255, 255, 255],
        [0, 255, 180],
        [255, 60, 60],
    ],
    dtype=np.uint8,
)


def to_uint8(image: Any) -> np.ndarray:
    """``float [-1, 1] (3, H, W)`` tensor or ``uint8 (H, W, 3)`` array → ``uint8 (H, W, 3)``."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        return image
    array = (
        image.detach().cpu().float().numpy()
        if hasattr(image, "detach")
        else np.asarray(image, dtype=np.float32)
    )
    return np.clip((array.transpose(1, 2, 0) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)


def outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the boundaries between mask classes coloured by the foreground class."""
    mask = np.asarray(mask)
    edge = np.zeros(mask.shape, dtype=bool)
    label = np.zeros(mask.shape, dtype=mask.dtype)
    for axis in (0, 1):
        a = mask
        b = np.roll(mask, -1, axis=axis)
        differs = a != b
        # the last row/column wraps around: not a boundary
        if axis == 0:
            differs[-1, :] = False
        else:
            differs[:, -1] = False
        edge |= differs
        label = np.where(differs, np.maximum(np.maximum(a, b), label), label)
    out = image.copy()
    out[edge] = PALETTE[label[edge] % len(PALETTE)]
    return out


def mask_colours(mask: np.ndarray) -> np.ndarray:
    """A mask as a colour image (class id → palette colour)."""
    return PALETTE[np.asarray(mask) % len(PALETTE)]


def thumbnail(image: Any, mask: Any = None, scale: int = 2) -> bytes:
    """PNG of one sample, upscaled ``scale``× by pixel repetition, mask outline drawn after
    upscaling so the line is thin relative to the image."""
    from PIL import Image

    pixels = to_uint8(image)
    pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    if mask is not None:
        m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
        pixels = outline(pixels, m.repeat(scale, axis=0).repeat(scale, axis=1))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_thumbnail(mask: Any, scale: int = 2) -> bytes:
    from PIL import Image

    m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    pixels = mask_colours(m).repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
