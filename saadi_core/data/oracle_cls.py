"""Oracle for ``toy-cls``: which organ does an image show, judged from its pixels alone.

The rule mirrors how the images are drawn (:mod:`saadi_core.data.toy_cls`):

1. **Foreground.** Organ colours come from a palette kept far from the tissue colour, and the
   tissue varies mostly in brightness. So pixels are compared in log-RGB, where a brightness change
   is a shift along ``(1, 1, 1)``: the distance is the chromatic part plus a down-weighted
   brightness part, measured against a background model (median of the border, then a quadratic
   colour surface fitted to the pixels judged background, which absorbs vignetting and slow
   shading). The image is lightly smoothed first, so sampling noise does not matter.
2. **Clean-up.** A small closing bridges one-pixel cracks, holes below ~0.6 % of the image are
   filled, components below 1 % of the image are ignored (noise specks), and more than a quarter
   of the foreground outside the two largest components counts as clutter.
3. **Shape.** Two similar compact blobs → ovary; a large enclosed hole → colon (ring); a thin or
   very elongated component → oviduct; a large compact one → uterus if its moment ellipse covers
   it well, liver (triangle) otherwise.
4. **Garbage.** No organ, an organ covering most of the image, foreground scattered over many
   pieces, or a background that is not one smooth surface (noise) → no class (``-1``), which
   fails every condition.

All thresholds are fractions of the image size, so any resolution works. The numbers were set on
clean images and checked on images degraded by blur σ = 1 px and noise σ = 8/255 (see
``benchmarks/datasets.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from saadi_core.data.oracle_features import as_batch, smoothed_log_rgb

COLON, LIVER, OVARY, OVIDUCT, UTERUS = range(5)
UNKNOWN = -1

_CROSS = ndimage.generate_binary_structure(2, 1)
_SQUARE = ndimage.generate_binary_structure(2, 2)


@dataclass(frozen=True)
class ClsOracleConfig:
    """Decision thresholds (distances in log-RGB units, areas as fractions of the image)."""

    smooth_sigma: float = 0.8
    brightness_weight: float = 0.3
    fg_threshold: float = 0.2
    max_background_spread: float = 0.11
    min_component: float = 0.01
    max_small_hole: float = 0.006
    max_foreground: float = 0.5
    max_clutter: float = 0.25
    ovary_second_ratio: float = 0.3
    ovary_max_blob: float = 0.08
    ovary_min_ellipse_iou: float = 0.75
    colon_min_hole: float = 0.1
    oviduct_max_thickness: float = 0.3
    oviduct_min_elongation: float = 4.0
    large_min_area: float = 0.05
    uterus_min_ellipse_iou: float = 0.83


def _log_features(images: np.ndarray, sigma: float, brightness_weight: float) -> np.ndarray:
    """Chromatic part of log-RGB (brightness removed) plus a down-weighted brightness."""
    x = smoothed_log_rgb(images, sigma)
    brightness = x.mean(axis=-1, keepdims=True)
    return np.concatenate([x - brightness, brightness_weight * brightness], axis=-1)


def _border(a: np.ndarray, width: int = 2) -> np.ndarray:
    """Border pixels of one ``(H, W, C)`` array as ``(K, C)``."""
    c = a.shape[-1]
    return np.concatenate(
        [
            a[:width].reshape(-1, c),
            a[-width:].reshape(-1, c),
            a[width:-width, :width].reshape(-1, c),
            a[width:-width, -width:].reshape(-1, c),
        ]
    )


def _quadratic_design(size_h: int, size_w: int) -> np.ndarray:
    yy, xx = np.meshgrid(np.linspace(-1, 1, size_h), np.linspace(-1, 1, size_w), indexing="ij")
    return (
        np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], axis=-1)
        .reshape(-1, 6)
        .astype(np.float32)
    )


def _moment_ellipse_iou(component: np.ndarray) -> tuple[float, float]:
    """Elongation (ratio of principal axes) and IoU between a component and the ellipse with the
    same centroid and second moments (1.0 for a filled ellipse, ≈0.8 for a triangle)."""
    ys, xs = np.nonzero(component)
    cy, cx = ys.mean(), xs.mean()
    cov = np.cov(np.stack([xs - cx, ys - cy])) + np.eye(2) / 12.0  # pixel-area variance
    evals, evecs = np.linalg.eigh(cov)
    evals = np.maximum(evals, 1e-6)
    yy, xx = np.mgrid[0 : component.shape[0], 0 : component.shape[1]]
    d = np.stack([xx - cx, yy - cy], axis=-1) @ evecs
    inside = (d[..., 0] ** 2 / (4 * evals[0]) + d[..., 1] ** 2 / (4 * evals[1])) <= 1.0
    union = np.logical_or(inside, component).sum()
    return float(np.sqrt(evals[1] / evals[0])), float(
        np.logical_and(inside, component).sum() / max(union, 1)
    )


class ToyClsOracle:
    """Implements :class:`saadi_core.data.dataset.Oracle` for ``toy-cls``."""

    def __init__(self, config: ClsOracleConfig | None = None) -> None:
        self.config = config or ClsOracleConfig()

    def foreground(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Foreground masks ``bool (N, H, W)`` and each image's background spread (the spread of
        background pixels around the fitted background model; large for noise)."""
        cfg = self.config
        images = as_batch(images)
        feats = _log_features(images, cfg.smooth_sigma, cfg.brightness_weight)
        n, h, w, c = feats.shape
        design = _quadratic_design(h, w)
        masks = np.empty((n, h, w), dtype=bool)
        spread = np.empty(n, dtype=np.float32)
        for i in range(n):
            f = feats[i]
            dist = np.linalg.norm(f - np.median(_border(f), axis=0), axis=-1)
            background = ~ndimage.binary_dilation(dist > cfg.fg_threshold, _SQUARE, iterations=2)
            if background.sum() >= design.shape[1] * 4:
                weighted = design * background.reshape(-1, 1)  # least squares on background pixels
                coef = np.linalg.solve(
                    weighted.T @ design + 1e-6 * np.eye(design.shape[1]),
                    weighted.T @ f.reshape(-1, c),
                )
                dist = np.linalg.norm(f - (design @ coef).reshape(h, w, c), axis=-1)
            masks[i] = dist > cfg.fg_threshold
            rest = dist[~ndimage.binary_dilation(masks[i], _SQUARE, iterations=2)]
            spread[i] = float(np.percentile(rest, 90)) if rest.size else np.inf
        return masks, spread

    def features(self, images: np.ndarray) -> list[dict[str, float]]:
        """Shape features of each image's foreground (what :meth:`predict` decides on)."""
        cfg = self.config
        masks, spread = self.foreground(images)
        out = []
        for mask, sp in zip(masks, spread):
            area = mask.size
            mask = ndimage.binary_closing(mask, _CROSS)
            holes = ndimage.binary_fill_holes(mask) & ~mask
            hole_lab, n_holes = ndimage.label(holes, _CROSS)
            if n_holes:
                hole_sizes = ndimage.sum_labels(holes, hole_lab, np.arange(1, n_holes + 1))
                small = np.flatnonzero(hole_sizes < cfg.max_small_hole * area) + 1
                mask = mask | np.isin(hole_lab, small)
            lab, n = ndimage.label(mask, _SQUARE)
            sizes = ndimage.sum_labels(mask, lab, np.arange(1, n + 1)) if n else np.zeros(0)
            order = np.argsort(-sizes)
            significant = [int(k) + 1 for k in order if sizes[k] >= cfg.min_component * area]
            fg = float(mask.sum())
            feat: dict[str, float] = {
                "background_spread": float(sp),
                "foreground": fg / area,
                "n_components": float(len(significant)),
                "clutter": 1.0 - float(sizes[order[:2]].sum()) / fg if fg else 1.0,
            }
            if significant:
                comp = lab == significant[0]
                filled = ndimage.binary_fill_holes(comp)
                elongation, iou = _moment_ellipse_iou(comp)
                feat.update(
                    area=float(comp.sum()) / area,
                    hole=float((filled & ~comp).sum()) / float(filled.sum()),
                    thickness=float(ndimage.distance_transform_edt(comp).max())
                    / float(np.sqrt(comp.sum())),
                    elongation=elongation,
                    ellipse_iou=iou,
                )
            if len(significant) >= 2:
                second = lab == significant[1]
                feat.update(
                    second_ratio=float(second.sum()) / float(comp.sum()),
                    second_ellipse_iou=_moment_ellipse_iou(second)[1],
                )
            out.append(feat)
        return out

    def _decide(self, f: dict[str, float]) -> int:
        cfg = self.config
        if (
            f["n_components"] == 0
            or f["background_spread"] > cfg.max_background_spread
            or f["foreground"] > cfg.max_foreground
            or f["clutter"] > cfg.max_clutter
        ):
            return UNKNOWN
        if f["n_components"] >= 2 and f["second_ratio"] >= cfg.ovary_second_ratio:
            two_blobs = f["n_components"] == 2 and f["area"] <= cfg.ovary_max_blob
            compact = min(f["ellipse_iou"], f["second_ellipse_iou"]) >= cfg.ovary_min_ellipse_iou
            return OVARY if two_blobs and compact else UNKNOWN
        if f["hole"] >= cfg.colon_min_hole:
            return COLON
        if (
            f["thickness"] <= cfg.oviduct_max_thickness
            or f["elongation"] >= cfg.oviduct_min_elongation
        ):
            return OVIDUCT
        if f["area"] < cfg.large_min_area:
            return UNKNOWN
        return UTERUS if f["ellipse_iou"] >= cfg.uterus_min_ellipse_iou else LIVER

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class id per image (``int64 (N,)``); ``-1`` when the image shows no recognisable organ."""
        return np.array([self._decide(f) for f in self.features(images)], dtype=np.int64)

    def check(
        self, images: np.ndarray, labels: np.ndarray | None = None, masks: np.ndarray | None = None
    ) -> np.ndarray:
        """``bool (N,)``: does each image show its intended class ``labels[i]``?"""
        if labels is None:
            raise ValueError("ToyClsOracle.check needs the intended class labels")
        labels = np.asarray(labels).reshape(-1)
        predicted = self.predict(images)
        if predicted.shape != labels.shape:
            raise ValueError(f"{len(predicted)} images but {len(labels)} labels")
        return predicted == labels
