"""Oracle for ``toy-seg`` version 2: does each region of the mask *look* like its class?

Version 2's classes differ by texture, shading and fine structure (see
:mod:`saadi_core.data.toy_seg_v2`), so the oracle judges regions, not pixels' colours:

1. For every class present in the intended mask (at least ``min_pixels``), it measures the
   region's look from the image's pixels inside the region only (normalised convolution, so
   neighbouring regions do not leak in): mean log-chromaticity (2 numbers; brightness-free),
   brightness relative to the whole image, fine texture (mean absolute difference to a
   σ = 0.7 px smoothing, relative to the region's brightness), medium-scale structure (σ 0.7 vs
   2 px), the share of specular pixels, and how brightness follows the distance to the region's
   border (bright centre lines, dome shading).
2. Each *appearance* — every foreground class and each of the three background kinds — has a
   Gaussian over those features, fitted once per image size to scenes drawn by the generative
   rule (a fixed calibration seed, independent of any dataset seed; clean and lightly noised).
3. A region passes when the most likely appearance is one of its class's and that appearance's
   Mahalanobis distance is within ``max_distance`` — so a region painted with another class's
   look fails (another appearance is likelier), and so does a flat or blurred region (no
   appearance fits it: every class has texture, highlights or a shading profile).
   The image passes when every region passes.

Thresholds were set on clean and degraded toy images against images whose regions carry another
class's look, flattened or blurred regions (``benchmarks/datasets.py``, ``tests/test_toy_datasets.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
from scipy import ndimage

from saadi_core.data.toy_draw import degrade
from saadi_core.data.toy_seg_v2 import BACKGROUND_KINDS, CLASS_NAMES, draw_scenes_with_kinds

_EPS = 1e-6
_MARGIN = 7  # px around a region: covers the widest smoothing (sigma 2) of its features


@dataclass(frozen=True)
class SegOracleV2Config:
    min_pixels: float = 0.002
    """regions smaller than this share of the image are not judged"""
    max_distance: float = 6.0
    """largest Mahalanobis distance (not squared) of a region to its class's appearance"""
    calibration_seed: int = 20261
    calibration_images: int = 120


def _appearances(num_classes: int, background_kinds: int) -> list[tuple[int, int]]:
    """``(mask class, background kind or -1)`` of every appearance model."""
    return [(0, b) for b in range(background_kinds)] + [(k, -1) for k in range(1, num_classes)]


@dataclass(frozen=True)
class RegionCrop:
    """A region and the image around it (``_MARGIN`` px), the pixels offset by +4 so that logs
    stay finite: what every region feature (of version 2 and version 3) is computed from."""

    pixels: np.ndarray
    """float ``(h, w, 3)``"""
    region: np.ndarray
    """bool ``(h, w)``"""
    lum: np.ndarray
    """float ``(h, w)``: the pixels' mean over the channels"""

    @classmethod
    def of(cls, image: np.ndarray, region: np.ndarray) -> RegionCrop:
        rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
        crop = (
            slice(max(rows[0] - _MARGIN, 0), rows[-1] + _MARGIN + 1),
            slice(max(cols[0] - _MARGIN, 0), cols[-1] + _MARGIN + 1),
        )
        pixels = image[crop].astype(np.float32) + 4.0
        return cls(pixels, region[crop], pixels.mean(axis=-1))

    def within(self, values: np.ndarray, sigma: float) -> np.ndarray:
        """``values`` smoothed with a Gaussian of ``sigma`` px using the region's pixels only
        (normalised convolution), so neighbouring regions do not leak in."""
        m = self.region.astype(np.float32)
        return ndimage.gaussian_filter(values * m, sigma) / np.maximum(
            ndimage.gaussian_filter(m, sigma), _EPS
        )

    def chromaticity(self) -> tuple[float, float]:
        """Brightness-free colour of the region: log(R/G) and log(√(RG)/B) of its mean."""
        log_rgb = np.log(self.pixels[self.region].mean(axis=0))
        return log_rgb[0] - log_rgb[1], (log_rgb[0] + log_rgb[1]) / 2 - log_rgb[2]


def depth_profile(depth: np.ndarray, values: np.ndarray) -> float:
    """Correlation of a region's brightness with the distance to its border (dome shading,
    bright centre lines), both given per region pixel."""
    d, v = depth - depth.mean(), values - values.mean()
    return float((d * v).mean() / (d.std() * v.std() + 1e-3))


def region_features(
    image: np.ndarray, region: np.ndarray, median_lum: float | None = None
) -> np.ndarray:
    """The look of ``region`` (bool ``(H, W)``) in ``image`` (``uint8 (H, W, 3)``): ``float (8,)``.
    ``median_lum``: the image's median brightness (+4), when the caller has it already."""
    if median_lum is None:
        median_lum = image_brightness(image)
    crop = RegionCrop.of(image, region)
    region, lum = crop.region, crop.lum
    chroma = crop.chromaticity()
    l_region = lum[region]
    level = float(l_region.mean())
    relative = np.log(level) - np.log(median_lum)
    fine_map = crop.within(lum, 0.7)
    coarse_map = crop.within(lum, 2.0)
    fine = float(np.abs(l_region - fine_map[region]).mean()) / level
    medium = float((fine_map[region] - coarse_map[region]).std()) / level
    specular = float(np.mean(l_region > 1.3 * np.median(l_region)))
    depth = np.minimum(ndimage.distance_transform_edt(region)[region], 3.0)
    profile = depth_profile(depth, l_region)
    return np.array(
        [
            chroma[0],
            chroma[1],
            relative,
            np.log(fine + 1e-3),
            np.log(medium + 1e-3),
            np.sqrt(specular),
            profile,
            np.log(level),
        ],
        np.float64,
    )


def image_brightness(image: np.ndarray) -> float:
    """Median brightness of an image (+4, as in :func:`region_features`)."""
    return float(np.median(image.astype(np.float32).mean(axis=-1))) + 4.0


def _regions(mask: np.ndarray, num_classes: int, min_pixels: float) -> list[tuple[int, np.ndarray]]:
    out = []
    for k in range(num_classes):
        region = mask == k
        if region.sum() >= max(min_pixels, 3):
            out.append((k, region))
    return out


@dataclass(frozen=True)
class LookModel:
    """What a region-appearance oracle is fitted to: the rule that draws its calibration scenes
    (images, masks, background kind per scene) and the features of a region's look. Version 2
    and version 3 (:mod:`saadi_core.data.oracle_seg_v3`) differ only in these."""

    draw_with_kinds: Callable[
        [int, int, np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]
    ]
    features: Callable[[np.ndarray, np.ndarray, float], np.ndarray]
    background_kinds: int
    calibration_blur: tuple[float, ...] = ()
    """Gaussian blurs (px at the calibration size) whose copies of the calibration scenes are fitted
    too: the blur up to which a region still counts as showing its class"""


V2_LOOKS = LookModel(draw_scenes_with_kinds, region_features, len(BACKGROUND_KINDS))


@lru_cache(maxsize=4)
def _calibrate(
    looks: LookModel, cfg: SegOracleV2Config, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, precision and log-determinant of every appearance, fitted on calibration scenes of
    ``size`` px (clean and with noise σ 4/255). Cached: every dataset build makes an oracle."""
    rng = np.random.default_rng(cfg.calibration_seed)
    images, masks, kinds = looks.draw_with_kinds(cfg.calibration_images, size, rng)
    variants = [images, degrade(images, rng, blur_sigma=0.0, noise_std=4.0)] + [
        degrade(images, rng, blur_sigma=sigma * size / 64.0, noise_std=0.0)
        for sigma in looks.calibration_blur
    ]
    num_classes = len(CLASS_NAMES)
    min_pixels = cfg.min_pixels * size * size
    appearances = _appearances(num_classes, looks.background_kinds)
    samples: dict[tuple[int, int], list[np.ndarray]] = {a: [] for a in appearances}
    for batch in variants:
        for image, mask, kind in zip(batch, masks, kinds):
            level = image_brightness(image)
            for k, region in _regions(mask, num_classes, min_pixels):
                samples[(k, int(kind) if k == 0 else -1)].append(
                    looks.features(image, region, level)
                )
    means, precisions, log_dets = [], [], []
    for appearance in appearances:
        x = np.array(samples[appearance])
        cov = np.cov(x, rowvar=False) + np.eye(x.shape[1]) * 1e-3
        means.append(x.mean(axis=0))
        precisions.append(np.linalg.inv(cov))
        log_dets.append(np.linalg.slogdet(cov)[1])
    return np.array(means), np.array(precisions), np.array(log_dets)


class ToySegOracleV2:
    """Implements :class:`saadi_core.data.dataset.Oracle` for ``toy-seg`` version 2."""

    looks: ClassVar[LookModel] = V2_LOOKS

    def __init__(self, config: SegOracleV2Config | None = None) -> None:
        self.config = config or SegOracleV2Config()
        self.num_classes = len(CLASS_NAMES)
        self.appearance_classes = np.array(
            [k for k, _ in _appearances(self.num_classes, self.looks.background_kinds)]
        )

    def region_verdicts(self, image: np.ndarray, mask: np.ndarray) -> list[dict[str, object]]:
        """Per judged region: its class, the likeliest appearance's class, its distance to its
        own class's closest appearance and whether it passes."""
        size = mask.shape[0]
        means, precisions, log_dets = _calibrate(self.looks, self.config, size)
        verdicts = []
        level = image_brightness(image)
        for k, region in _regions(mask, self.num_classes, self.config.min_pixels * mask.size):
            diff = self.looks.features(image, region, level) - means
            maha = np.einsum("ai,aij,aj->a", diff, precisions, diff)
            loglik = -0.5 * (maha + log_dets)
            own = self.appearance_classes == k
            distance = float(np.sqrt(maha[own].min()))
            best = int(self.appearance_classes[int(np.argmax(loglik))])
            verdicts.append(
                {
                    "class": k,
                    "looks_like": best,
                    "distance": distance,
                    "pass": best == k and distance <= self.config.max_distance,
                }
            )
        return verdicts

    def check(
        self, images: np.ndarray, labels: np.ndarray | None = None, masks: np.ndarray | None = None
    ) -> np.ndarray:
        """``bool (N,)``: does every region of ``masks[i]`` look like its class in ``images[i]``?"""
        if masks is None:
            raise ValueError("ToySegOracleV2.check needs the intended masks")
        images = _as_batch(images)
        masks = np.asarray(masks)
        if masks.ndim == 2:
            masks = masks[None]
        if images.shape[:3] != masks.shape:
            raise ValueError(f"images {images.shape[:3]} and masks {masks.shape} differ in shape")
        return np.array(
            [all(v["pass"] for v in self.region_verdicts(im, m)) for im, m in zip(images, masks)],
            dtype=bool,
        )


def _as_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"oracle expects uint8 images (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    return images
