"""Registration of the fidelity metrics (lazy: no torch or torchmetrics imported here).

``fid``, ``kid`` (torchmetrics on the run's feature extractor), ``ms-ssim``, ``psnr``
(torchmetrics; against paired reference images, plus MS-SSIM diversity of the synthetic set),
``region-fid-kid`` (per-class FID/KID on bounding-box crops, SimGen's sFID/sKID) and
``memorisation`` (nearest real training image of every synthetic one). The contract they
implement is :mod:`saadi_core.evaluation.fidelity`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from saadi_core import hookimpl

_OPTIONS = "saadi_metrics.options"

#: kind -> (implementation, options model, description, paper profile)
METRICS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "fid": (
        "saadi_metrics.distribution:FID",
        f"{_OPTIONS}:FIDOptions",
        "Fréchet distance between real and synthetic feature distributions (torchmetrics)",
        {},
    ),
    "kid": (
        "saadi_metrics.distribution:KID",
        f"{_OPTIONS}:KIDOptions",
        "Kernel (polynomial MMD²) distance between real and synthetic features, mean ± std over subsets (torchmetrics)",
        {"subsets": 100},
    ),
    "ms-ssim": (
        "saadi_metrics.similarity:MSSSIM",
        f"{_OPTIONS}:MSSSIMOptions",
        "MS-SSIM against paired reference images, and mean MS-SSIM between synthetic pairs (diversity; lower = more diverse)",
        {"kernel_size": 11, "sigma": 1.5, "diversity_pairs": 1000},
    ),
    "psnr": (
        "saadi_metrics.similarity:PSNR",
        f"{_OPTIONS}:PSNROptions",
        "PSNR (dB) against paired reference images (torchmetrics)",
        {},
    ),
    "region-fid-kid": (
        "saadi_metrics.regions:RegionFIDKID",
        f"{_OPTIONS}:RegionOptions",
        "per-class FID/KID on class bounding-box crops (SimGen's sFID/sKID); segmentation only",
        {"kid_subsets": 100, "max_crops": None},
    ),
    "memorisation": (
        "saadi_metrics.memorisation:Memorisation",
        f"{_OPTIONS}:MemorisationOptions",
        "distance from each synthetic image to its nearest real training image, with the closest pairs",
        {"top_k": 16},
    ),
}


@hookimpl
def saadi_register_metrics(register: Callable[..., None]) -> None:
    for kind, (target, options, description, paper) in METRICS.items():
        register(
            kind, target, options=options, description=description, profiles={"paper": dict(paper)}
        )
