"""Per-class FID/KID on class bounding-box crops (SimGen's sFID/sKID).

Whole-image FID is dominated by large structures (tissue, background); a generator can score
well while drawing small classes (a cystic duct, a tool tip) badly. For every foreground class
this metric crops, from each image whose mask holds at least ``min_region_pixels`` of that
class, the tight bounding box of all its pixels (with whatever else lies inside the box, as
SimGen does), resizes the crop to a fixed size, and computes FID/KID between the real and the
synthetic crops in the run's feature space. Every crop costs a feature-network forward, so at
most ``max_crops`` per class and set are used (a seeded subset, the same real one for every
variant). Synthetic crops use the synthetic images' masks (the
conditioning or generated mask), so they show where the generator was asked to draw the class.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from saadi_core.evaluation.fidelity import FidelityInputs
from saadi_metrics.distribution import fid_from_features, kid_from_features
from saadi_metrics.options import RegionOptions


def bounding_box(mask: torch.Tensor, class_id: int) -> tuple[int, int, int, int] | None:
    """Tight box ``(top, bottom, left, right)`` (bottom/right exclusive) of ``class_id`` in a
    mask ``(H, W)``, or ``None`` if the class is absent."""
    hit = mask == class_id
    rows, cols = hit.any(dim=1).nonzero().flatten(), hit.any(dim=0).nonzero().flatten()
    if rows.numel() == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def class_crops(
    images: torch.Tensor, masks: torch.Tensor, class_id: int, size: tuple[int, int], min_pixels: int
) -> tuple[torch.Tensor, list[int]]:
    """Bounding-box crops of ``class_id`` resized to ``size`` (bilinear, antialiased when
    shrinking) from every image where the class covers ≥ ``min_pixels`` pixels; returns the
    crops ``(K, 3, *size)`` and the indices of the images they came from."""
    counts = (masks == class_id).flatten(1).sum(dim=1)
    crops, sources = [], []
    for i in (counts >= min_pixels).nonzero().flatten().tolist():
        top, bottom, left, right = bounding_box(masks[i], class_id)  # type: ignore[misc]
        crop = images[i : i + 1, :, top:bottom, left:right].float()
        if tuple(crop.shape[-2:]) != tuple(size):
            crop = F.interpolate(
                crop, size=size, mode="bilinear", align_corners=False, antialias=True
            )
        crops.append(crop)
        sources.append(i)
    if not crops:
        return images.new_zeros((0, images.shape[1], *size), dtype=torch.float32), sources
    return torch.cat(crops).clamp(-1.0, 1.0), sources


def _at_most(crops: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    """A seeded random subset of ``limit`` crops, in their original order (all if fewer)."""
    if limit is None or len(crops) <= limit:
        return crops
    keep = torch.randperm(len(crops), generator=torch.Generator().manual_seed(seed))[:limit]
    return crops[keep.sort().values]


class RegionFIDKID:
    """``region-fid-kid``: ``per_class[name] = {fid, kid_mean, kid_std, n_real, n_synthetic}``
    for every foreground class with at least ``min_crops`` real and synthetic crops."""

    name = "region-fid-kid"

    def __init__(self, options: RegionOptions) -> None:
        self.options = options

    def compute(self, inputs: FidelityInputs) -> dict[str, Any]:
        if inputs.real_masks is None or inputs.synthetic_masks is None:
            missing = "real" if inputs.real_masks is None else "synthetic"
            return {
                "notes": [
                    f"no {missing} masks (classification data or a generator without masks): per-class region FID/KID omitted"
                ]
            }
        o = self.options
        size = (o.crop_size, o.crop_size) if o.crop_size else tuple(inputs.real.shape[-2:])
        per_class: dict[str, Any] = {}
        notes: list[str] = []
        capped = False
        for class_id, class_name in enumerate(inputs.class_names):
            if class_id == inputs.background_id:
                continue
            real, _ = class_crops(
                inputs.real, inputs.real_masks, class_id, size, o.min_region_pixels
            )
            synthetic, _ = class_crops(
                inputs.synthetic, inputs.synthetic_masks, class_id, size, o.min_region_pixels
            )
            if o.max_crops is not None and max(len(real), len(synthetic)) > o.max_crops:
                capped = True
                real, synthetic = (
                    _at_most(real, o.max_crops, o.seed + class_id),
                    _at_most(synthetic, o.max_crops, o.seed + class_id),
                )
            if min(len(real), len(synthetic)) < o.min_crops:
                notes.append(
                    f"class '{class_name}': {len(real)} real / {len(synthetic)} synthetic crops of ≥ {o.min_region_pixels} px "
                    f"(fewer than min_crops={o.min_crops}); omitted"
                )
                continue
            real_f, synthetic_f = inputs.features(real), inputs.features(synthetic)
            kid_mean, kid_std, _ = kid_from_features(
                real_f, synthetic_f, o.kid_subsets, o.kid_subset_size, seed=o.seed
            )
            per_class[class_name] = {
                "fid": fid_from_features(real_f, synthetic_f),
                "kid_mean": kid_mean,
                "kid_std": kid_std,
                "n_real": len(real),
                "n_synthetic": len(synthetic),
            }
        if capped:
            notes.append(
                f"classes with more than max_crops={o.max_crops} crops use a seeded random subset of that many"
            )
        out: dict[str, Any] = {"notes": notes}
        if per_class:
            out["per_class"] = per_class
        return out
