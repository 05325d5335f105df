"""Oracle for ``toy-seg`` version 3: does each region have its class's colour and coarse structure?

Version 3's classes (:mod:`saadi_core.data.toy_seg_v3`) have distinct colours and a coarse
structure with a random phase (highlights, rings, beads, a bright half). The oracle is version 2's
region-appearance oracle (:mod:`saadi_core.data.oracle_seg_v2`: one Gaussian per appearance over
a region's features, fitted on calibration scenes; a region passes when its own class's
appearance is the likeliest and close enough) with features that see only structure ≥ ~3 px at
64 px — what a generator with 16 × 16 latents can draw. Before measuring structure the region's
brightness is smoothed *within the region* (σ 1.2 px at 64 px), so pixel noise and the blur of a
4× latent upsampling do not change the verdict, while a flat region (the average of a class over
its random phases) has almost no structure left and fails.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from saadi_core.data.oracle_seg_v2 import LookModel, RegionCrop, ToySegOracleV2, depth_profile
from saadi_core.data.toy_seg_v3 import BACKGROUND_KINDS, draw_scenes_with_kinds_v3

_EPS = 1e-6


def region_features_v3(image: np.ndarray, region: np.ndarray, median_lum: float) -> np.ndarray:
    """The coarse look of ``region`` (bool ``(H, W)``) in ``image`` (``uint8 (H, W, 3)``):
    ``float (8,)`` — chromaticity (2), brightness relative to the image's median (+4) and
    absolute, coarse structure (std of the smoothed brightness), share of bright spots, how
    brightness follows the distance to the region's border (dome shading), and whether it changes
    across the region or along it (a tool's bright half vs a duct's rings, which share colours)."""
    sigma = 1.2 * image.shape[0] / 64.0
    crop = RegionCrop.of(image, region)
    region = crop.region
    smooth_map = crop.within(crop.lum, sigma)
    smooth = smooth_map[region]
    chroma = crop.chromaticity()
    level = float(crop.lum[region].mean())
    structure = float(smooth.std()) / level
    bright = float(np.mean(smooth > 1.12 * np.median(smooth)))
    distance = ndimage.distance_transform_edt(region)
    profile = depth_profile(np.minimum(distance[region], 3.0 * sigma), smooth)
    # does brightness change across the region (towards its border: halves, domes) or along it
    # (rings, beads)? |cos| between the brightness gradient and the distance map's gradient
    ly, lx = (g[region] for g in np.gradient(smooth_map))
    dy, dx = (g[region] for g in np.gradient(distance))
    strength = np.hypot(ly, lx)
    cos = np.abs(ly * dy + lx * dx) / (strength * np.hypot(dy, dx) + _EPS)
    across = float((strength * cos).sum() / (strength.sum() + _EPS))
    return np.array(
        [
            chroma[0],
            chroma[1],
            np.log(level) - np.log(median_lum),
            np.log(structure + 1e-3),
            np.sqrt(bright),
            profile,
            across,
            np.log(level),
        ],
        np.float64,
    )


V3_LOOKS = LookModel(
    draw_scenes_with_kinds_v3,
    region_features_v3,
    len(BACKGROUND_KINDS),
    calibration_blur=(1.25,),
)


class ToySegOracleV3(ToySegOracleV2):
    """Implements :class:`saadi_core.data.dataset.Oracle` for ``toy-seg`` version 3."""

    looks = V3_LOOKS
