"""FID and KID on the run's feature extractor, computed by torchmetrics.

torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` accept any feature
module; here that module is a pass-through and ``update`` receives features the run's extractor
already computed (memoised by :func:`saadi_core.evaluation.fidelity.compute_fidelity`), so the
real features are extracted once for FID, KID, memorisation and every variant.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from saadi_core.evaluation.fidelity import FidelityInputs
from saadi_core.evaluation.stats import paired_bootstrap
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
    real: torch.Tensor,
    synthetic: torch.Tensor,
    subsets: int,
    subset_size: int,
    degree: int = 3,
    seed: int = 0,
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
        metric = KernelInceptionDistance(
            feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size, degree=degree
        )
    metric.update(real.double(), real=True)
    metric.update(synthetic.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), size


class _Frechet:
    """FID against a fixed real set, for many synthetic sets (a bootstrap): the real mean,
    covariance and its square root are computed once, and Tr((Σ_r Σ_s)^½) is taken as
    Tr((Σ_r^½ Σ_s Σ_r^½)^½) from the eigenvalues of a symmetric matrix — the same value
    :func:`fid_from_features` gives. With ``Y = X_c Σ_r^½ / √(n−1)`` (``X_c`` the centred
    synthetic features), Σ_r^½ Σ_s Σ_r^½ = YᵀY shares its non-zero eigenvalues with the n × n
    YYᵀ, so each resample costs O(n·d²) + O(min(n, d)³): it follows the number of samples when
    they are fewer than the feature dimensions, instead of a fixed O(d³)."""

    def __init__(self, real: np.ndarray) -> None:
        self.mean = real.mean(axis=0)
        cov = np.cov(real, rowvar=False)
        values, vectors = np.linalg.eigh(cov)
        self.root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
        self.trace = float(np.trace(cov))

    def distance(self, synthetic: np.ndarray) -> float:
        mean = synthetic.mean(axis=0)
        centred = synthetic - mean
        scale = 1.0 / np.sqrt(len(synthetic) - 1)
        y = (centred @ self.root) * scale
        gram = y @ y.T if len(y) < y.shape[1] else y.T @ y
        values = np.linalg.eigvalsh((gram + gram.T) / 2)
        shift = float(((self.mean - mean) ** 2).sum())
        trace_synthetic = float((centred * centred).sum()) * scale**2
        return max(
            0.0,
            shift
            + self.trace
            + trace_synthetic
            - 2.0 * float(np.sqrt(np.clip(values, 0.0, None)).sum()),
        )


def polynomial_mmd(real: np.ndarray, synthetic: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD² with KID's kernel ``(x·y / d + 1)^degree`` on whole sets (no subsets)."""
    return _MMD(real, degree).against(
        synthetic.dot(real.T), synthetic.dot(synthetic.T), np.arange(len(synthetic))
    )


class _MMD:
    """Polynomial-kernel MMD² against a fixed real set, for synthetic rows chosen (with repeats)
    by a bootstrap: the real–real term is computed once, the others from precomputed dot
    products. Repeated rows count as distinct draws, as a bootstrap resample does."""

    def __init__(self, real: np.ndarray, degree: int) -> None:
        self.dim, self.degree, self.n = real.shape[1], degree, len(real)
        k_rr = self.kernel(real.dot(real.T))
        self.term_rr = (k_rr.sum() - np.trace(k_rr)) / (self.n * (self.n - 1))

    def kernel(self, dots: np.ndarray) -> np.ndarray:
        return (dots / self.dim + 1.0) ** self.degree

    def against(self, dots_sr: np.ndarray, dots_ss: np.ndarray, rows: np.ndarray) -> float:
        m = len(rows)
        k_ss = self.kernel(dots_ss[np.ix_(rows, rows)])
        term_ss = (k_ss.sum() - np.trace(k_ss)) / (m * (m - 1))
        return float(self.term_rr + term_ss - 2.0 * self.kernel(dots_sr[rows]).mean())


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

    def compare(
        self, base: FidelityInputs, aligned: FidelityInputs, groups: np.ndarray
    ) -> dict[str, Any]:
        """``fid``: aligned − base with a paired bootstrap (:func:`paired_bootstrap`; the real set fixed)."""
        if _too_few(base, "FID") or _too_few(aligned, "FID"):
            return {}
        frechet = _Frechet(base.features(base.real).numpy())

        def fid_of(inputs: FidelityInputs) -> Callable[[np.ndarray], float]:
            synthetic = inputs.features(inputs.synthetic).numpy()
            return lambda rows: frechet.distance(synthetic[rows])

        block = paired_bootstrap(
            groups,
            fid_of(base),
            fid_of(aligned),
            self.options.compare_resamples,
            higher_is_better=False,
        )
        return {"fid": block}


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
            inputs.features(inputs.real),
            inputs.features(inputs.synthetic),
            o.subsets,
            o.subset_size,
            o.degree,
            o.seed,
        )
        notes = (
            []
            if size == o.subset_size
            else [f"subset_size lowered from {o.subset_size} to {size} (half the smaller set)"]
        )
        return {"kid_mean": mean, "kid_std": std, "notes": notes}

    def compare(
        self, base: FidelityInputs, aligned: FidelityInputs, groups: np.ndarray
    ) -> dict[str, Any]:
        """``kid_whole_set``: whole-set MMD² (not the subset mean) of each variant, aligned − base
        with a paired bootstrap (:func:`paired_bootstrap`; the real set fixed)."""
        if _too_few(base, "KID") or _too_few(aligned, "KID"):
            return {}
        real = base.features(base.real).numpy()
        mmd = _MMD(real, self.options.degree)

        def mmd_of(inputs: FidelityInputs) -> Callable[[np.ndarray], float]:
            synthetic = inputs.features(inputs.synthetic).numpy()
            dots_sr, dots_ss = synthetic.dot(real.T), synthetic.dot(synthetic.T)
            return lambda rows: mmd.against(dots_sr, dots_ss, rows)

        block = paired_bootstrap(
            groups,
            mmd_of(base),
            mmd_of(aligned),
            self.options.compare_resamples,
            higher_is_better=False,
        )
        return {"kid_whole_set": block}
