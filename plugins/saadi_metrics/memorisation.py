"""Memorisation check: how close is each synthetic image to its nearest real training image?

A generator trained on a few hundred images can reproduce some of them; those copies add no
new information to the downstream training set and inflate fidelity metrics. For every
synthetic image this metric finds the nearest image of ``FidelityInputs.real`` (which must be
the real *training* split) and reports the distribution of those distances plus the ``top_k``
closest pairs with their indices, so the report can show them side by side.

Distances (``space`` option): ``feature`` — L2 between the run's feature-extractor embeddings,
which also catches near-copies that moved or changed a little; ``pixel`` — root-mean-square
difference per pixel value on the ``[-1, 1]`` scale (0 = identical, 2 = opposite), the plain
exact-copy test. A note gives the same statistic between real training images (each to its
nearest *other* real image) as the scale a synthetic distance should be read against.
"""

from __future__ import annotations

from typing import Any

import torch

from saadi_core.evaluation.fidelity import FidelityInputs
from saadi_metrics.options import MemorisationOptions

#: synthetic rows per distance block, to bound memory in pixel space
_CHUNK = 256


def nearest_neighbours(
    queries: torch.Tensor, keys: torch.Tensor, exclude_self: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to, and index of, the nearest row of ``keys`` for every row of ``queries``
    (both ``(·, D)``), by exact Euclidean distance (no matrix-product shortcut, so an exact copy
    is at distance 0, not at round-off). ``exclude_self`` skips the diagonal (``queries`` =
    ``keys``)."""
    queries, keys = queries.double(), keys.double()
    distances, indices = [], []
    for start in range(0, len(queries), _CHUNK):
        block = torch.cdist(
            queries[start : start + _CHUNK], keys, compute_mode="donot_use_mm_for_euclid_dist"
        )
        if exclude_self:
            rows = torch.arange(len(block))
            block[rows, rows + start] = float("inf")
        value, index = block.min(dim=1)
        distances.append(value)
        indices.append(index)
    return torch.cat(distances), torch.cat(indices)


class Memorisation:
    """``memorisation`` (written to the ``memorisation`` section): ``nearest_distance`` (mean,
    median, min over synthetic images) and ``closest_pairs`` (the ``top_k`` smallest, with
    ``synthetic_index`` into ``synthetic`` and ``real_index`` into ``real``)."""

    name = "memorisation"
    section = "memorisation"

    def __init__(self, options: MemorisationOptions) -> None:
        self.options = options

    def _embed(self, inputs: FidelityInputs, images: torch.Tensor) -> torch.Tensor:
        if self.options.space == "feature":
            return inputs.features(images)
        return images.double().flatten(1).clamp(-1.0, 1.0)

    def compute(self, inputs: FidelityInputs) -> dict[str, Any]:
        if len(inputs.real) == 0 or len(inputs.synthetic) == 0:
            return {"notes": ["needs real training and synthetic images; omitted"]}
        real, synthetic = self._embed(inputs, inputs.real), self._embed(inputs, inputs.synthetic)
        scale = (
            1.0 if self.options.space == "feature" else real.shape[1] ** -0.5
        )  # pixel: RMS per value
        distance, nearest = nearest_neighbours(synthetic, real)
        distance = distance * scale
        order = torch.argsort(distance, stable=True)[: self.options.top_k]
        unit = (
            f"L2 in the '{inputs.features.name}' feature space"
            if self.options.space == "feature"
            else "RMS pixel difference on [-1, 1]"
        )
        notes = [f"distances are {unit}"]
        if len(real) >= 2:
            baseline, _ = nearest_neighbours(real, real, exclude_self=True)
            notes.append(
                f"for scale: median distance from a real training image to its nearest other one is {float((baseline * scale).quantile(0.5)):.4g}"
            )
        return {
            "nearest_distance": {
                "mean": float(distance.mean()),
                "median": float(distance.quantile(0.5)),
                "min": float(distance.min()),
            },
            "closest_pairs": [
                {
                    "synthetic_index": int(i),
                    "real_index": int(nearest[i]),
                    "distance": float(distance[i]),
                }
                for i in order
            ],
            "notes": notes,
        }
