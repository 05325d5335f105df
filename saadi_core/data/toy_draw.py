"""Drawing primitives shared by the embedded toy datasets.

Shapes are drawn from signed distance functions (negative inside, in pixels): one vectorised
expression per shape on a 64×64 grid costs microseconds, edges are anti-aliased for free
(coverage = ``clip(0.5 - d, 0, 1)``), and the same distance gives shading that darkens towards an
organ's rim. Tissue texture is smooth random noise made by blurring a coarse random grid with a
fixed interpolation matrix (``M @ R @ M.T``), far cheaper than filtering every image.

Everything works on ``float32 (H, W, 3)`` images with values in ``[0, 255]``; :func:`to_uint8`
rounds at the end.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(yy, xx)`` pixel-centre coordinates of a ``size × size`` image (read-only arrays)."""
    axis = np.arange(size, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


@lru_cache(maxsize=32)
def _smoothing_matrix(size: int, cells: int) -> np.ndarray:
    """Rows are Gaussian weights from each pixel to ``cells`` control points (rows sum to 1)."""
    centres = (np.arange(cells, dtype=np.float32) + 0.5) * size / cells
    pixels = np.arange(size, dtype=np.float32) + 0.5
    width = size / cells
    w = np.exp(-0.5 * ((pixels[:, None] - centres[None, :]) / (0.7 * width)) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    w.setflags(write=False)
    return w


def smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth noise ``(size, size, channels)``, roughly unit standard deviation, with features
    about ``size / cells`` pixels across."""
    m = _smoothing_matrix(size, cells)
    coarse = rng.standard_normal((channels, cells, cells)).astype(np.float32)
    field = np.moveaxis(m @ coarse @ m.T, 0, -1)
    return field / max(float(field.std()), 1e-6)


def coverage(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in ``[0, 1]`` from a signed distance (pixels, negative inside)."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def local_coords(size: int, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(u, v)`` in a frame centred at ``(cx, cy)`` and rotated by ``angle``."""
    yy, xx = pixel_grid(size)
    dx, dy = xx - np.float32(cx), yy - np.float32(cy)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return dx * c + dy * s, -dx * s + dy * c


def ellipse_sdf(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact on the boundary, first-order
    off it — plenty for anti-aliasing and shading)."""
    f = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) / np.maximum(f, 1e-6)
    return (f - 1.0) / np.maximum(grad, 1e-6)


def polygon_sdf(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Signed distance to a convex polygon with counter-clockwise ``vertices (K, 2)`` as the
    maximum of the edge half-plane distances (exact inside, rounded-corner-free outside)."""
    d = np.full(u.shape, -np.inf, dtype=np.float32)
    for p, q in zip(vertices, np.roll(vertices, -1, axis=0)):
        ex, ey = q - p
        norm = float(np.hypot(ex, ey))
        nx, ny = ey / norm, -ex / norm  # outward normal for counter-clockwise order in (u, v)
        d = np.maximum(d, (u - p[0]) * nx + (v - p[1]) * ny)
    return d


def arc_band_sdf(
    u: np.ndarray, v: np.ndarray, radius: float, half_angle: float, half_width: float
) -> np.ndarray:
    """Signed distance to a band of ``half_width`` around a circular arc with round caps.

    The arc has its centre of curvature at the frame origin, radius ``radius`` and spans
    ``[-half_angle, half_angle]`` around the ``+u`` direction.
    """
    r = np.sqrt(u**2 + v**2)
    phi = np.arctan2(v, u)
    on_arc = np.abs(phi) <= half_angle
    ends = [(radius * np.cos(s * half_angle), radius * np.sin(s * half_angle)) for s in (-1.0, 1.0)]
    cap = np.minimum(*[np.sqrt((u - ex) ** 2 + (v - ey) ** 2) for ex, ey in ends])
    dist = np.where(on_arc, np.abs(r - radius), cap)
    return (dist - half_width).astype(np.float32)


def polyline_band_sdf(size: int, points: np.ndarray, half_width: float) -> np.ndarray:
    """Signed distance to a band of ``half_width`` around a polyline ``points (K, 2)`` in pixel
    ``(x, y)`` coordinates (round joints and caps)."""
    yy, xx = pixel_grid(size)
    best = np.full(xx.shape, np.inf, dtype=np.float32)
    for p, q in zip(points[:-1], points[1:]):
        e = q - p
        length2 = float(e @ e) or 1e-6
        t = np.clip(((xx - p[0]) * e[0] + (yy - p[1]) * e[1]) / length2, 0.0, 1.0)
        best = np.minimum(best, np.hypot(xx - (p[0] + t * e[0]), yy - (p[1] + t * e[1])))
    return best - np.float32(half_width)


def paint(image: np.ndarray, colour_layer: np.ndarray, alpha: np.ndarray) -> None:
    """Composite ``colour_layer`` (``(H, W, 3)`` or a colour ``(3,)``) over ``image`` in place."""
    a = alpha[..., None]
    image *= 1.0 - a
    image += a * colour_layer


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def degrade(
    images: np.ndarray, rng: np.random.Generator, blur_sigma: float = 1.0, noise_std: float = 8.0
) -> np.ndarray:
    """Blur (Gaussian, ``blur_sigma`` px) and add Gaussian noise (``noise_std`` in 0–255 units):
    roughly what a small, under-trained diffusion model does to fine detail. Used to check that
    the oracles judge content, not pixel-perfect rendering."""
    x = images.astype(np.float32)
    if blur_sigma > 0:
        x = ndimage.gaussian_filter(x, sigma=(0, blur_sigma, blur_sigma, 0))
    if noise_std > 0:
        x += rng.normal(0.0, noise_std, size=x.shape).astype(np.float32)
    return to_uint8(x)


def tissue(
    rng: np.random.Generator, size: int, base_rgb: np.ndarray, vessels: int = 2
) -> np.ndarray:
    """A wet-tissue background: ``base_rgb`` modulated by smooth luminance and colour noise, a
    finer mottling, a few faint vessels and a mild endoscope vignette.

    Every modulation is kept well below the contrast of the structures drawn on top, so the
    tissue reads as one surface (the oracles rely on this).
    """
    lum = 1.0 + 0.06 * smooth_noise(rng, size, 4)[..., 0]
    lum += 0.025 * smooth_noise(rng, size, max(size // 5, 6))[..., 0]
    tint = 1.0 + 0.015 * smooth_noise(rng, size, 3, channels=3)
    image = base_rgb.astype(np.float32)[None, None, :] * lum[..., None] * tint
    for _ in range(vessels):
        u, v = local_coords(size, *rng.uniform(0.0, size, 2), rng.uniform(0, 2 * np.pi))
        radius = rng.uniform(0.4, 1.2) * size
        band = arc_band_sdf(u + radius, v, radius, rng.uniform(0.3, 0.8), rng.uniform(0.4, 0.8))
        image *= 1.0 - 0.07 * coverage(band)[..., None]
    yy, xx = pixel_grid(size)
    r2 = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size / 2) ** 2
    image *= (1.0 - 0.05 * r2)[..., None]
    return image


def specular(
    rng: np.random.Generator, layer: np.ndarray, inside: np.ndarray, sigma: float, strength: float
) -> None:
    """Add one glossy highlight (a soft spot of ``sigma`` px) to a colour ``layer`` at a random
    pixel of ``inside`` (boolean mask), in place.

    The spot brightens the layer's own hue up to full brightness and only then whitens it a
    little (at most 20 %): white mixed into a red organ would give tissue pink, and a highlight
    that looks like tissue would punch holes into thin organs.
    """
    ys, xs = np.nonzero(inside)
    if ys.size == 0:
        return
    k = int(rng.integers(ys.size))
    yy, xx = pixel_grid(layer.shape[0])
    spot = strength * np.exp(-((yy - ys[k] - 0.5) ** 2 + (xx - xs[k] - 0.5) ** 2) / (2 * sigma**2))
    gain = 255.0 / np.maximum(layer.max(axis=-1), 1.0)
    layer *= (1.0 + spot * (gain - 1.0))[..., None]
    paint(layer, np.array([255.0, 255.0, 255.0], dtype=np.float32), (0.2 * spot).astype(np.float32))
