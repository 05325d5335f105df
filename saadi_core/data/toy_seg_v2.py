"""``toy-seg`` version 2 (opt-in: ``version: 2``): a cholecystectomy scene whose classes differ by *look*.

Version 1 (:mod:`saadi_core.data.toy_seg`) gives every class its own colour range, so a
mask-conditioned generator only has to fill a region with the right colour — every generator sat
at the oracle's ceiling with near-identical samples per mask. Here filling a mask is a real task:

* **Classes are told apart by texture, shading and fine structure, not only colour.** The
  gallbladder is smooth and glossy (a dome-shaded body with small specular highlights); the cystic
  duct is a pale tube with fine transverse rings (period 3-4 px at 64 px); the cystic artery is a
  thin tube with dark edges and a bright centre line; the tool is grey metal with a bright
  specular stripe along the shaft. Colours overlap with the backgrounds' (a pale duct on yellow
  fat, a red artery on red-brown liver), so the colour alone does not settle the class.
* **Backgrounds and lighting vary.** Each scene's tissue is one of three kinds — granular liver,
  lobular fat (a network of dark cell walls) or fibrous peritoneum (streaks) — and the scene is
  lit with a random gain, colour temperature, light direction and vignette.
* **Thin and small classes exist**: the artery is 3-4 px wide at 64 px, the duct 4-6 px.
* **Samples of one mask can differ.** Every look has random parameters (hue within the class's
  range, ring period and phase, highlight positions, lighting), so one mask has many valid
  images; a generator that renders the class's average (a flat, blurred region) fails the oracle.

:class:`~saadi_core.data.oracle_seg_v2.ToySegOracleV2` reads each region's look back from its
pixels. ``draw_scenes(..., looks=...)`` paints a class's region with another class's look (used
to check that the oracle rejects it). Masks and class names are those of version 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from saadi_core.data.dataset import Dataset
from saadi_core.data.toy_draw import (
    _smoothing_matrix,
    coverage,
    local_coords,
    paint,
    pixel_grid,
    smooth_noise,
    to_uint8,
)
from saadi_core.data.toy_seg import (
    ARTERY,
    CLASS_NAMES,
    DUCT,
    GALLBLADDER,
    P_ARTERY,
    P_DUCT,
    P_TOOL,
    TOOL,
    _curve,
    _gallbladder,
    toy_seg_dataset,
)

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping


__all__ = ["BACKGROUND_KINDS", "CLASS_NAMES", "SceneStyle", "draw_scenes", "make_toy_seg_v2"]

#: the kinds of tissue a scene's background is drawn as (the oracle accepts any of them for class 0)
BACKGROUND_KINDS = ("liver", "fat", "peritoneum")

_GB_OLIVE = np.array([122, 140, 62], np.float32)
_GB_TEAL = np.array([70, 118, 92], np.float32)
_DUCT_RGB = np.array([222, 196, 138], np.float32)
_ARTERY_RGB = np.array([168, 40, 44], np.float32)
_TOOL_RGB = np.array([150, 150, 158], np.float32)


def _scale(size: int) -> float:
    return size / 64.0


def _colour(
    rng: np.random.Generator, rgb: np.ndarray, gain: float = 0.06, offset: float = 5.0
) -> np.ndarray:
    return rgb * np.float32(rng.uniform(1 - gain, 1 + gain)) + rng.uniform(
        -offset, offset, 3
    ).astype(np.float32)


# --------------------------------------------------------------------------- backgrounds


@dataclass(frozen=True)
class Tissue:
    """How a version draws its background tissues (:data:`BACKGROUND_KINDS`): their colours and
    the scale of their texture, as (divisor, floor) pairs giving ``max(size // divisor, floor)``
    noise cells — version 2 draws fine granules and streaks, version 3 only coarse ones."""

    liver_rgb: tuple[float, float, float]
    fat_rgb: tuple[float, float, float]
    peritoneum_rgb: tuple[float, float, float]
    liver_cells: tuple[int, int]
    liver_amplitude: float
    fat_cells: tuple[int, int]
    fat_wall_depth: float
    fat_wall_width: float
    streak_cells: tuple[int, int]


def _cells(size: int, scale: tuple[int, int]) -> int:
    return max(size // scale[0], scale[1])


def tissue_background(rng: np.random.Generator, size: int, kind: str, tissue: Tissue) -> np.ndarray:
    """A background of ``kind`` drawn as ``tissue`` says, unlit: liver mottled, fat in lobules
    (dark walls where a noise crosses zero), peritoneum streaked along one direction."""
    coarse = 1.0 + 0.05 * smooth_noise(rng, size, 4)[..., 0]
    if kind == "liver":
        noise = smooth_noise(rng, size, _cells(size, tissue.liver_cells))[..., 0]
        lum = coarse + tissue.liver_amplitude * noise
        rgb = tissue.liver_rgb
    elif kind == "fat":
        n = smooth_noise(rng, size, _cells(size, tissue.fat_cells))[..., 0]
        lum = coarse * (1.0 - tissue.fat_wall_depth * np.exp(-((n / tissue.fat_wall_width) ** 2)))
        rgb = tissue.fat_rgb
    else:
        streaks = _axis_noise(rng, size, _cells(size, tissue.streak_cells), 3)
        streaks = streaks if rng.random() < 0.5 else streaks.T
        lum = coarse + 0.08 * streaks
        rgb = tissue.peritoneum_rgb
    base = _colour(rng, np.array(rgb, np.float32))
    return base[None, None, :] * lum[..., None].astype(np.float32)


V2_TISSUE = Tissue(
    liver_rgb=(150, 72, 62),
    fat_rgb=(214, 172, 100),
    peritoneum_rgb=(200, 128, 118),
    liver_cells=(2, 8),
    liver_amplitude=0.07,
    fat_cells=(7, 4),
    fat_wall_depth=0.22,
    fat_wall_width=0.22,
    streak_cells=(2, 8),
)


def _axis_noise(rng: np.random.Generator, size: int, fine: int, coarse: int) -> np.ndarray:
    """Noise that is fine along y and smooth along x (streaks), unit std."""
    grid = rng.standard_normal((fine, coarse)).astype(np.float32)
    field = _smoothing_matrix(size, fine) @ grid @ _smoothing_matrix(size, coarse).T
    return field / max(float(field.std()), 1e-6)


# --------------------------------------------------------------------------- shapes


def _band(
    size: int, points: np.ndarray, half_width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distance to a band around a polyline, arclength along it and signed offset across
    it (``[-1, 1]`` inside)."""
    yy, xx = pixel_grid(size)
    best = np.full(xx.shape, np.inf, np.float32)
    along = np.zeros(xx.shape, np.float32)
    across = np.zeros(xx.shape, np.float32)
    start = 0.0
    for p, q in itertools.pairwise(points):
        e = q - p
        length = float(np.hypot(*e)) or 1e-6
        t = np.clip(((xx - p[0]) * e[0] + (yy - p[1]) * e[1]) / length**2, 0.0, 1.0)
        dx, dy = xx - (p[0] + t * e[0]), yy - (p[1] + t * e[1])
        dist = np.hypot(dx, dy)
        closer = dist < best
        best = np.where(closer, dist, best)
        along = np.where(closer, start + t * length, along)
        across = np.where(closer, (dx * -e[1] + dy * e[0]) / length, across)
        start += length
    return (
        (best - np.float32(half_width)).astype(np.float32),
        along,
        np.clip(across / half_width, -1, 1).astype(np.float32),
    )


def _tool_shape(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shaft with two jaws entering from a random border: ``(sdf, along, across)``."""
    side = int(rng.integers(4))
    pos = rng.uniform(0.15, 0.85) * size
    out = -0.1 * size
    entry = np.array(
        {0: (pos, out), 1: (size - out, pos), 2: (pos, size - out), 3: (out, pos)}[side], np.float64
    )
    inward = {0: np.pi / 2, 1: np.pi, 2: -np.pi / 2, 3: 0.0}[side] + rng.uniform(-0.6, 0.6)
    half_width = max(rng.uniform(0.065, 0.085) * size, 2.5)
    d = np.array([np.cos(inward), np.sin(inward)])
    tip = entry + rng.uniform(0.4, 0.65) * size * d
    sdf, along, across = _band(size, np.stack([entry, tip]), half_width)
    jaw, opening = rng.uniform(0.09, 0.13) * size, rng.uniform(0.15, 0.45)
    for s in (-1.0, 1.0):
        end = tip + jaw * np.array([np.cos(inward + s * opening), np.sin(inward + s * opening)])
        j_sdf, _, j_across = _band(size, np.stack([tip, end]), 0.45 * half_width)
        closer = j_sdf < sdf
        sdf, across = np.where(closer, j_sdf, sdf), np.where(closer, j_across, across)
    return sdf, along, across


# --------------------------------------------------------------------------- looks


def _look(
    rng: np.random.Generator,
    look: int,
    size: int,
    sdf: np.ndarray,
    along: np.ndarray,
    across: np.ndarray,
) -> np.ndarray:
    """The colour layer ``(S, S, 3)`` of a region drawn with class ``look``'s appearance.

    ``sdf`` is the region's signed distance, ``along``/``across`` its coordinates along the shape
    (px) and across it (``[-1, 1]``); ``depth`` (``[0, 1]``, 1 deep inside) drives tubular and
    dome shading.
    """
    k = _scale(size)
    if look == GALLBLADDER:
        depth = np.clip(-sdf / (4.0 * k), 0.0, 1.0)
        base = _GB_OLIVE + np.float32(rng.uniform()) * (_GB_TEAL - _GB_OLIVE)
        shade = 0.78 + 0.22 * np.sqrt(depth) + 0.06 * across
        layer = _colour(rng, base)[None, None, :] * shade[..., None]
        inside = np.argwhere(sdf < -1.5 * k)
        yy, xx = pixel_grid(size)
        for _ in range(int(rng.integers(2, 5)) if len(inside) else 0):
            y, x = inside[rng.integers(len(inside))] + 0.5
            spot = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * (rng.uniform(0.7, 1.1) * k) ** 2))
            layer += (rng.uniform(0.6, 0.9) * spot)[..., None] * (250.0 - layer)
        return layer
    if look == DUCT:
        depth = np.clip(-sdf / (2.0 * k), 0.0, 1.0)
        period = rng.uniform(3.0, 4.0) * k
        rings = np.cos(2 * np.pi * along / period + rng.uniform(0, 2 * np.pi))
        shade = (0.8 + 0.2 * depth) * (1.0 + 0.2 * rings)
        return _colour(rng, _DUCT_RGB)[None, None, :] * shade[..., None]
    if look == ARTERY:
        centre = 1.0 - np.abs(across)
        shade = 0.5 + 0.55 * centre**1.5
        layer = _colour(rng, _ARTERY_RGB)[None, None, :] * shade[..., None]
        line = np.clip((centre - 0.6) / 0.4, 0.0, 1.0) * rng.uniform(0.35, 0.5)
        return layer + line[..., None] * (240.0 - layer)
    if look == TOOL:
        tint = 1.0 + rng.uniform(-0.06, 0.06) * np.array([1.0, -0.3, -0.7], np.float32)
        stripe_at = rng.choice([-0.4, 0.4])
        shade = (
            0.55 + 0.35 * (1.0 - across**2) + 0.55 * np.exp(-(((across - stripe_at) / 0.22) ** 2))
        )
        return (
            np.clip(_colour(rng, _TOOL_RGB, 0.08, 3.0) * tint, 0, 255)[None, None, :]
            * shade[..., None]
        )
    raise ValueError(f"no look for class {look}")


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class SceneStyle:
    """What a version of these scenes draws differently: its tissues, the classes' looks and the
    artery's width.

    Versions 2 and 3 share the scene layout (shapes, lighting, background kinds); version 3
    (:mod:`saadi_core.data.toy_seg_v3`) swaps in coarse tissues and looks and a wider artery."""

    tissue: Tissue
    look: Callable[[np.random.Generator, int, int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    artery_half_width: tuple[float, float]
    """range of the artery's half-width as a share of the image size"""


V2_STYLE = SceneStyle(tissue=V2_TISSUE, look=_look, artery_half_width=(0.025, 0.03))


def _light(rng: np.random.Generator, size: int) -> np.ndarray:
    """Per-scene lighting ``(S, S, 3)``: gain, colour temperature, a light gradient and vignette."""
    yy, xx = pixel_grid(size)
    gain = rng.uniform(0.75, 1.12)
    warm = rng.uniform(-0.06, 0.06)
    tint = np.array([1 + warm, 1.0, 1 - warm], np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (
        1.0
        + rng.uniform(0.0, 0.18)
        * ((xx / size - 0.5) * np.cos(angle) + (yy / size - 0.5) * np.sin(angle))
        * 2
    )
    r2 = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size / 2) ** 2
    vignette = 1.0 - rng.uniform(0.05, 0.3) * r2
    return (gain * ramp * vignette)[..., None] * tint


def draw_scenes(
    n: int,
    image_size: int,
    rng: np.random.Generator,
    looks: Mapping[int, int] | None = None,
    style: SceneStyle = V2_STYLE,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` scenes: ``uint8 (n, S, S, 3)`` images and ``int64 (n, S, S)`` masks.

    ``looks`` maps a class id to the class whose appearance its regions get (default: its own);
    the masks are unchanged, so the images are deliberately wrong for them.
    """
    images, masks, _ = draw_scenes_with_kinds(n, image_size, rng, looks, style)
    return images, masks


def draw_scenes_with_kinds(
    n: int,
    image_size: int,
    rng: np.random.Generator,
    looks: Mapping[int, int] | None = None,
    style: SceneStyle = V2_STYLE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`draw_scenes` plus each scene's background kind (index into :data:`BACKGROUND_KINDS`),
    which the oracle's calibration needs."""
    looks = dict(looks or {})
    s = image_size
    k = _scale(s)
    images = np.empty((n, s, s, 3), np.uint8)
    masks = np.empty((n, s, s), np.int64)
    kinds = np.empty(n, np.int64)
    for i in range(n):
        kinds[i] = int(rng.integers(len(BACKGROUND_KINDS)))
        image = tissue_background(rng, s, BACKGROUND_KINDS[kinds[i]], style.tissue)
        label = np.zeros((s, s), np.int64)

        sdf, neck, angle = _gallbladder(rng, s)
        u, v = local_coords(s, neck[0], neck[1], angle)
        image *= (1.0 - 0.12 * coverage(sdf - 2.0 * k))[..., None]
        paint(
            image,
            style.look(
                rng, looks.get(GALLBLADDER, GALLBLADDER), s, sdf, u, np.clip(v / (0.2 * s), -1, 1)
            ),
            coverage(sdf),
        )
        label[sdf < 0] = GALLBLADDER

        if rng.random() < P_DUCT:
            half_width = max(rng.uniform(0.035, 0.045) * s, 2.0)
            path = _curve(
                rng, neck, angle + rng.uniform(-0.5, 0.5), rng.uniform(0.3, 0.45) * s, 0.25
            )
            sdf, along, across = _band(s, path, half_width)
            paint(
                image, style.look(rng, looks.get(DUCT, DUCT), s, sdf, along, across), coverage(sdf)
            )
            label[sdf < 0] = DUCT

        if rng.random() < P_ARTERY:
            half_width = max(rng.uniform(*style.artery_half_width) * s, 1.6)
            side = rng.choice([-1.0, 1.0])
            start = neck + side * rng.uniform(0.08, 0.14) * s * np.array(
                [-np.sin(angle), np.cos(angle)]
            )
            path = _curve(
                rng, start, angle + side * rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.4) * s, 0.3
            )
            sdf, along, across = _band(s, path, half_width)
            paint(
                image,
                style.look(rng, looks.get(ARTERY, ARTERY), s, sdf, along, across),
                coverage(sdf),
            )
            label[sdf < 0] = ARTERY

        if rng.random() < P_TOOL:
            sdf, along, across = _tool_shape(rng, s)
            image *= (1.0 - 0.2 * coverage(sdf - 2.5 * k))[..., None]
            paint(
                image, style.look(rng, looks.get(TOOL, TOOL), s, sdf, along, across), coverage(sdf)
            )
            label[sdf < 0] = TOOL

        images[i] = to_uint8(image * _light(rng, s))
        masks[i] = label
    return images, masks, kinds


def make_toy_seg_v2(
    seed: int = 0,
    n_train: int = 600,
    n_test: int = 200,
    image_size: int = 64,
    n_layouts: int = 0,
) -> Dataset:
    """``toy-seg`` version 2 (deterministic for given arguments)."""
    from saadi_core.data.oracle_seg_v2 import ToySegOracleV2

    return toy_seg_dataset(
        draw_scenes, ToySegOracleV2(), 2, 0x5E62, seed, n_train, n_test, image_size, n_layouts
    )
