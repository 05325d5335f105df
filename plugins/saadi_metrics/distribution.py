"""FID and KID on the run's feature extractor, computed by torchmetrics.

torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` accept any feature
module; here that module is a pass-through and ``update`` receives features the run's extractor
already computed (memoised by :func:`saadi_core.evaluation.fidelity.compute_fidelity`), so the
real features are extracted once for FID, KID, memorisation and every variant.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from saadi_core.evaluation.fidelity import FidelityInputs
from saadi_metrics.options import FIDOptions, KIDOptions


class _Precomputed(torch.nn.Module):
    """Identity 'feature network' of a known width, for features computed elsewhere."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid_from_features(real: torch.Tensor, synthetic: torch.Tensor) -> float:
    """FID between two feature sets ``(N, D)`` and ``(M, D)`` (each needs ≥ 2 rows).

    The value is ``‖μ_r − μ_s‖² + Tr(Σ_r + Σ_s − 2(Σ_r Σ_s)^½)``; round-off can make it a tiny
    negative number for identical sets, which is reported as 0.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(synthetic.double(), real=False)
    return max(0.0, float(metric.compute()))


def kid_from_features(
    real: torch.Tensor, synthetic: torch.Tensor, subsets: int, subset_size: int, degree: int = 3, seed: int = 0
) -> tuple[float, float, int]:
    """KID mean and std over ``subsets`` random subsets, and the subset size used.

    The size is ``subset_size`` capped at half the smaller set (at least 2): torchmetrics fails
    when a set is smaller than the subset, and subsets as large as a set would all be that whole
    set, leaving ``kid_std`` at 0 instead of measuring the sampling spread. The estimator is
    unbiased at any subset size, so the cap adds noise, not bias. Subsets are drawn from
    ``seed`` without touching the caller's random state.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    size = max(2, min(subset_size, len(real) // 2, len(synthetic) // 2))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size, degree=degree)
    metric.update(real.double(), real=True)
    metric.update(synthetic.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), size


def _too_few(inputs: FidelityInputs, what: str) -> str | None:
    if len(inputs.real) < 2 or len(inputs.synthetic) < 2:
        return f"{what} needs at least 2 real and 2 synthetic images (got {len(inputs.real)} and {len(inputs.synthetic)}); omitted"
    return None


class FID:
    """``fid``: see :func:`fid_from_features`. Lower is better; comparable only between sets of
    equal sizes measured with the same feature extractor."""

    name = "fid"

    def __init__(self, options: FIDOptions) -> None:
        self.options = options

    def compute(self, inputs: FidelityInputs) -> dict[str, Any]:
        problem = _too_few(inputs, "FID")
        if problem:
            return {"notes": [problem]}
        real, synthetic = inputs.features(inputs.real), inputs.features(inputs.synthetic)
        notes = []
        n, dim = min(len(real), len(synthetic)), real.shape[1]
        if n <= dim:
            notes.append(
                f"only {n} images for {dim}-d features: the covariance estimates are rank-deficient and FID is biased "
                "upwards; compare only variants with the same image counts"
            )
        return {"fid": fid_from_features(real, synthetic), "notes": notes}


class KID:
    """``kid``: unbiased MMD² with a cubic polynomial kernel, mean ± std over random subsets.
    Unbiased, so it can be slightly negative when the sets are alike; lower is better."""

    name = "kid"

    def __init__(self, options: KIDOptions) -> None:
        self.options = options

    def compute(self, inputs: FidelityInputs) -> dict[str, Any]:
        problem = _too_few(inputs, "KID")
        if problem:
            return {"notes": [problem]}
        o = self.options
        mean, std, size = kid_from_features(
            inputs.features(inputs.real), inputs.features(inputs.synthetic), o.subsets, o.subset_size, o.degree, o.seed
        )
        notes = [] if size == o.subset_size else [f"subset_size lowered from {o.subset_size} to {size} (half the smaller set)"]
        return {"kid_mean": mean, "kid_std": std, "notes": notes}
