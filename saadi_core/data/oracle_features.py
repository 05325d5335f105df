"""Pixel features both toy oracles start from.

Both oracles judge an image from its colours, and both must ignore what the drawing rule varies
freely: sampling noise (a light Gaussian blur removes it) and brightness from shading (in log-RGB
a brightness change is a shift along ``(1, 1, 1)``, so it separates from hue). They differ only in
how they split log-RGB into chromatic and brightness parts, which stays in each oracle."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: added to 0–255 values before the log, so black pixels stay finite and dark noise is damped
LOG_OFFSET = 8.0


def as_batch(images: np.ndarray) -> np.ndarray:
    """``uint8 (N, H, W, 3)`` from one image or a batch; a clear error for anything else."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"oracle expects uint8 images (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    return images


def smoothed_log_rgb(images: np.ndarray, sigma: float) -> np.ndarray:
    """``float32 (N, H, W, 3)``: log-RGB of images blurred spatially by ``sigma`` pixels."""
    x = images.astype(np.float32)
    if sigma > 0:
        x = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0))
    return np.log(x + LOG_OFFSET)
