"""``toy-seg`` version 3: each class has its colour *and* a coarse structure with a random phase.

Version 1 gives every class a colour range: a generator that fills a mask with the class's average
colour passes, so every tiny generator sat at the oracle's ceiling with near-identical samples
per mask. Version 2 tells classes apart by fine texture (rings 3-4 px apart, 1 px highlights) that
the tiny generators, whose latents are 16 × 16, cannot draw at all: they pass it 0-3 %. Version 3
sits between the two, at a scale a 16 × 16 latent can hold:

* **Every class has a coarse structure with a random phase**, 8-15 px across at 64 px: the
  gallbladder one to three broad highlights at random places on a dome-shaded body; the cystic
  duct broad transverse rings (period 11-15 px, random phase); the cystic artery — as wide as the
  duct here — beads of light and dark along its length (period 9-13 px, random phase); the tool a
  bright and a dark half of its shaft, the bright side random. The *average* of a class — what a
  generator that ignores its noise renders — is a flat region, and fails.
* **Colours differ by class, but for one pair**: the duct and the tool share a pale cream, so a
  segmentation model — and so the selector — must use their structure (rings along, a bright half
  across) to tell them apart; a duct or tool drawn without it is ambiguous to the selector, not
  only to the oracle. The other classes keep their own colours (unlike version 2, where every
  class overlapped with a background), so the task stays learnable by a small model.
* **Backgrounds and lighting vary** as in version 2 (liver, fat, peritoneum; gain, colour
  temperature, light gradient, vignette), with their textures coarsened to the same scale.

The scene layout (shapes, lighting) is version 2's (:class:`~saadi_core.data.toy_seg_v2.SceneStyle`);
:class:`~saadi_core.data.oracle_seg_v3.ToySegOracleV3` judges each region's colour and coarse
structure from its pixels, tolerating the blur of a 4× latent upsampling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from saadi_core.data.dataset import Dataset
from saadi_core.data.toy_draw import pixel_grid
from saadi_core.data.toy_seg import ARTERY, CLASS_NAMES, DUCT, GALLBLADDER, TOOL, toy_seg_dataset
from saadi_core.data.toy_seg_v2 import (
    BACKGROUND_KINDS,
    SceneStyle,
    Tissue,
    _colour,
    draw_scenes_with_kinds,
)

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Mapping

__all__ = ["BACKGROUND_KINDS", "CLASS_NAMES", "V3_STYLE", "draw_scenes", "make_toy_seg_v3"]

_GB_OLIVE = np.array([118, 146, 60], np.float32)
_GB_TEAL = np.array([64, 124, 100], np.float32)
_DUCT_RGB = np.array([236, 222, 186], np.float32)
_ARTERY_RGB = np.array([178, 30, 52], np.float32)
_TOOL_RGB = np.array([214, 206, 184], np.float32)


#: version 3's tissues: the same kinds, textures no finer than ~6 px at 64 px
V3_TISSUE = Tissue(
    liver_rgb=(146, 70, 60),
    fat_rgb=(212, 170, 96),
    peritoneum_rgb=(196, 128, 126),
    liver_cells=(8, 4),
    liver_amplitude=0.08,
    fat_cells=(10, 4),
    fat_wall_depth=0.2,
    fat_wall_width=0.35,
    streak_cells=(8, 4),
)


def _look(
    rng: np.random.Generator,
    look: int,
    size: int,
    sdf: np.ndarray,
    along: np.ndarray,
    across: np.ndarray,
) -> np.ndarray:
    """The colour layer ``(S, S, 3)`` of a region drawn with class ``look``'s appearance
    (arguments as in version 2's looks: signed distance, px along the shape, ``[-1, 1]`` across)."""
    k = size / 64.0
    phase = rng.uniform(0, 2 * np.pi)
    if look == GALLBLADDER:
        depth = np.clip(-sdf / (6.0 * k), 0.0, 1.0)
        base = _GB_OLIVE + np.float32(rng.uniform()) * (_GB_TEAL - _GB_OLIVE)
        layer = _colour(rng, base)[None, None, :] * (0.72 + 0.28 * np.sqrt(depth))[..., None]
        inside = np.argwhere(sdf < -3.0 * k)
        yy, xx = pixel_grid(size)
        for _ in range(int(rng.integers(1, 4)) if len(inside) else 0):
            y, x = inside[rng.integers(len(inside))] + 0.5
            width = rng.uniform(2.2, 3.0) * k
            spot = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * width**2))
            layer += (rng.uniform(0.45, 0.65) * spot)[..., None] * (245.0 - layer)
        return layer
    if look == DUCT:
        depth = np.clip(-sdf / (2.0 * k), 0.0, 1.0)
        rings = np.cos(2 * np.pi * along / (rng.uniform(11.0, 15.0) * k) + phase)
        shade = (0.85 + 0.15 * depth) * (1.0 + 0.22 * rings)
        return _colour(rng, _DUCT_RGB)[None, None, :] * shade[..., None]
    if look == ARTERY:
        beads = np.cos(2 * np.pi * along / (rng.uniform(9.0, 13.0) * k) + phase)
        shade = (0.8 + 0.2 * (1.0 - np.abs(across))) * (1.0 + 0.35 * beads)
        return _colour(rng, _ARTERY_RGB)[None, None, :] * shade[..., None]
    if look == TOOL:
        side = rng.choice([-1.0, 1.0])
        shade = 0.55 + 0.6 / (1.0 + np.exp(-side * across / 0.2)) - 0.1 * across**2
        return _colour(rng, _TOOL_RGB, 0.08, 3.0)[None, None, :] * shade[..., None]
    raise ValueError(f"no look for class {look}")


V3_STYLE = SceneStyle(tissue=V3_TISSUE, look=_look, artery_half_width=(0.035, 0.045))


def draw_scenes(
    n: int, image_size: int, rng: np.random.Generator, looks: Mapping[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` version 3 scenes: ``uint8 (n, S, S, 3)`` images and ``int64 (n, S, S)`` masks.
    ``looks`` maps a class to the class whose look its regions get (to test the oracle)."""
    images, masks, _ = draw_scenes_with_kinds_v3(n, image_size, rng, looks)
    return images, masks


def draw_scenes_with_kinds_v3(
    n: int, image_size: int, rng: np.random.Generator, looks: Mapping[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`draw_scenes` plus each scene's background kind (the oracle's calibration needs it)."""
    return draw_scenes_with_kinds(n, image_size, rng, looks, V3_STYLE)


def make_toy_seg_v3(
    seed: int = 0,
    n_train: int = 600,
    n_test: int = 200,
    image_size: int = 64,
    n_layouts: int = 0,
) -> Dataset:
    """``toy-seg`` version 3 (deterministic for given arguments)."""
    from saadi_core.data.oracle_seg_v3 import ToySegOracleV3

    return toy_seg_dataset(
        draw_scenes, ToySegOracleV3(), 3, 0x5E63, seed, n_train, n_test, image_size, n_layouts
    )
