"""Oracle for ``toy-seg``: does an image realise its mask, judged from its pixels alone.

Each ``toy-seg`` class is drawn with its own colour range, so a pixel's class can be read off its
colour. The oracle:

1. describes each pixel (after a light blur that removes sampling noise) by two log-chromaticity
   coordinates and a down-weighted log-brightness — shading and shadows change brightness, not
   hue;
2. scores the pixel under one Gaussian per class, fitted once to interior pixels of scenes drawn
   by the generative rule itself (a fixed calibration seed, independent of any dataset seed), and
   smooths the class posteriors over a small neighbourhood;
3. compares the resulting label map with the intended mask: Dice per foreground class over the
   classes that either map shows (ignoring specks below ``min_region`` of the image), and passes
   the image when their mean reaches ``threshold``.

Counting classes the image shows but the mask does not (and vice versa) is what makes a wrong
pairing fail: a tool drawn where the mask has none costs as much as a missing one.
The threshold was calibrated on clean and degraded (blur σ = 1 px, noise σ = 8/255) toy images
against images paired with another image's mask (see ``benchmarks/datasets.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from saadi_core.data.oracle_features import as_batch, smoothed_log_rgb
from saadi_core.data.toy_seg import CLASS_NAMES, draw_scenes

_OPPONENT = np.array(
    [
        [1 / np.sqrt(2), -1 / np.sqrt(2), 0.0],
        [1 / np.sqrt(6), 1 / np.sqrt(6), -2 / np.sqrt(6)],
        [1 / np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(3)],
    ],
    dtype=np.float32,
).T


@dataclass(frozen=True)
class SegOracleConfig:
    smooth_sigma: float = 0.7
    brightness_weight: float = 0.5
    posterior_sigma: float = 1.0
    min_region: float = 0.004
    threshold: float = 0.55
    calibration_seed: int = 20250
    calibration_images: int = 48


def pixel_features(images: np.ndarray, sigma: float, brightness_weight: float) -> np.ndarray:
    """``float32 (N, H, W, 3)``: two log-chromaticity coordinates and weighted log-brightness."""
    f = smoothed_log_rgb(images, sigma) @ _OPPONENT
    f[..., 2] *= brightness_weight
    return f


@lru_cache(maxsize=4)
def _calibrate(cfg: SegOracleConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit one Gaussian per class (mean, precision, log-determinant) to interior pixels of
    calibration scenes; cached, since every ``toy-seg`` dataset builds an oracle."""
    images, masks = draw_scenes(
        cfg.calibration_images, 64, np.random.default_rng(cfg.calibration_seed)
    )
    feats = pixel_features(images, cfg.smooth_sigma, cfg.brightness_weight)
    means, precisions, log_dets = [], [], []
    for k in range(len(CLASS_NAMES)):
        interior = np.stack([ndimage.binary_erosion(m == k) for m in masks])
        x = feats[interior].astype(np.float64)
        cov = np.cov(x, rowvar=False) + np.eye(3) * 1e-4
        means.append(x.mean(axis=0))
        precisions.append(np.linalg.inv(cov))
        log_dets.append(np.linalg.slogdet(cov)[1])
    return (
        np.array(means, np.float32),
        np.array(precisions, np.float32),
        np.array(log_dets, np.float32),
    )


class ToySegOracle:
    """Implements :class:`saadi_core.data.dataset.Oracle` for ``toy-seg``."""

    def __init__(self, config: SegOracleConfig | None = None) -> None:
        self.config = config or SegOracleConfig()
        self.num_classes = len(CLASS_NAMES)
        self._means, self._precisions, self._log_dets = _calibrate(self.config)

    def posteriors(self, images: np.ndarray) -> np.ndarray:
        """Smoothed class posteriors ``float32 (N, H, W, K)`` (equal class priors: a rare class
        is not penalised for being rare)."""
        cfg = self.config
        feats = pixel_features(as_batch(images), cfg.smooth_sigma, cfg.brightness_weight)
        diff = feats[..., None, :] - self._means  # (N, H, W, K, 3)
        maha = np.einsum("nhwki,kij,nhwkj->nhwk", diff, self._precisions, diff)
        loglik = -0.5 * (maha + self._log_dets)
        loglik -= loglik.max(axis=-1, keepdims=True)
        post = np.exp(loglik)
        post /= post.sum(axis=-1, keepdims=True)
        if cfg.posterior_sigma > 0:
            post = ndimage.gaussian_filter(
                post, sigma=(0, cfg.posterior_sigma, cfg.posterior_sigma, 0)
            )
        return post

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Per-pixel class ids ``int64 (N, H, W)`` read from the pixels."""
        return self.posteriors(images).argmax(axis=-1).astype(np.int64)

    def dice(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Mean foreground Dice per image (``float (N,)``) between the label map read from the
        image and the intended mask, over the classes either of them shows (1.0 when both show
        tissue only)."""
        masks = np.asarray(masks)
        if masks.ndim == 2:
            masks = masks[None]
        predicted = self.predict(images)
        if predicted.shape != masks.shape:
            raise ValueError(f"images {predicted.shape} and masks {masks.shape} differ in shape")
        min_pixels = self.config.min_region * masks.shape[1] * masks.shape[2]
        scores = np.empty(len(masks), dtype=np.float64)
        for i, (pred, want) in enumerate(zip(predicted, masks)):
            per_class = []
            for k in range(1, self.num_classes):
                p, w = pred == k, want == k
                if p.sum() < min_pixels and w.sum() < min_pixels:
                    continue
                per_class.append(2.0 * np.logical_and(p, w).sum() / (p.sum() + w.sum()))
            scores[i] = float(np.mean(per_class)) if per_class else 1.0
        return scores

    def check(
        self, images: np.ndarray, labels: np.ndarray | None = None, masks: np.ndarray | None = None
    ) -> np.ndarray:
        """``bool (N,)``: does each image realise its intended mask ``masks[i]``?"""
        if masks is None:
            raise ValueError("ToySegOracle.check needs the intended masks")
        return self.dice(images, masks) >= self.config.threshold
