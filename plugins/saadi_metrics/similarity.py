"""Paired pixel metrics (PSNR, MS-SSIM against a reference) and MS-SSIM diversity (torchmetrics).

PSNR and MS-SSIM need a *paired* real image per synthetic one (``FidelityInputs.reference``:
the inpainting source, the simulator frame); generators that keep none get no value and a note.
``diversity_ms_ssim`` needs no reference: the mean MS-SSIM between random pairs of synthetic
images, a standard diversity proxy (lower = more diverse; near 1 = mode collapse).

MS-SSIM at 64 px: the standard 5 scales with an 11-px window need images of ≥ 161 px, so the
number of scales is the largest (≤ ``max_scales``) that torchmetrics accepts for the image size
and window, and the standard 5-scale weights are truncated to it and renormalised to sum to 1
(coarse scales dropped, fine ones kept in their relative proportions). With the ``tiny`` window
(7 px, σ = 1) a 64-px image gets 4 scales, the coarsest 8 px wide. Images are mapped from
``[-1, 1]`` to ``[0, 1]`` (data range 1, clamped); negative contrast terms are clipped at 0
(torchmetrics' ``normalize="relu"``) so fractional powers never produce NaN.
"""

from __future__ import annotations

from typing import Any

import torch

from saadi_core.errors import ConfigError
from saadi_core.evaluation.fidelity import FidelityInputs
from saadi_metrics.options import MSSSIMOptions, PSNROptions

#: Wang et al.'s 5-scale MS-SSIM weights (torchmetrics' default)
STANDARD_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: pairs per torchmetrics call: it stacks five filtered copies of the batch, ~2 GB for 600 pairs at 256 px
_BATCH = 64
NO_REFERENCE = (
    "no paired reference images (the generator keeps no source/simulator frame per sample)"
)


def ms_ssim_betas(
    height: int, width: int, kernel_size: int, max_scales: int = 5
) -> tuple[float, ...]:
    """Scale weights for an image of ``height × width``: the first ``n`` standard weights,
    renormalised, with ``n`` the largest number of scales torchmetrics accepts for the size and
    window (it needs ``side ≥ 2ⁿ`` and ``side // max(1, n − 1)² > kernel_size − 1``)."""
    side = min(height, width)
    for n in range(min(max_scales, len(STANDARD_BETAS)), 0, -1):
        if side >= 2**n and side // max(1, n - 1) ** 2 > kernel_size - 1:
            betas = STANDARD_BETAS[:n]
            return tuple(b / sum(betas) for b in betas)
    raise ConfigError(
        f"ms-ssim: images of {height}×{width} px are too small for options.kernel_size {kernel_size}; lower it"
    )


def ms_ssim_per_image(a: torch.Tensor, b: torch.Tensor, options: MSSSIMOptions) -> torch.Tensor:
    """MS-SSIM of each pair ``a[i]``, ``b[i]`` (images in ``[-1, 1]``), shape ``(N,)``."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    betas = ms_ssim_betas(a.shape[-2], a.shape[-1], options.kernel_size, options.max_scales)
    values = [
        multiscale_structural_similarity_index_measure(
            _unit(a[start : start + _BATCH]),
            _unit(b[start : start + _BATCH]),
            kernel_size=options.kernel_size,
            sigma=options.sigma,
            data_range=1.0,
            betas=betas,
            normalize="relu",
            reduction="none",
        ).double()
        for start in range(0, len(a), _BATCH)
    ]
    return torch.cat(values) if values else torch.empty(0, dtype=torch.float64)


def psnr(a: torch.Tensor, b: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """PSNR in dB (images in ``[-1, 1]``, data range 2): ``10·log10(4 / MSE)``, ``+inf`` when
    the images are identical. By default one value for the whole set, from the MSE over all
    pixels of all pairs (so one exact copy cannot turn a mean into ``+inf``); ``per_image``
    gives one value per pair, shape ``(N,)``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    dims = (1, 2, 3) if per_image else None
    return peak_signal_noise_ratio(
        a.double().clamp(-1, 1),
        b.double().clamp(-1, 1),
        data_range=2.0,
        reduction="none" if per_image else "elementwise_mean",
        dim=dims,
    )


def _unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)


class MSSSIM:
    """``ms-ssim``: ``ms_ssim`` (mean over synthetic/reference pairs, higher = closer to the
    reference) and ``diversity_ms_ssim`` (mean over random synthetic pairs, lower = more diverse)."""

    name = "ms-ssim"

    def __init__(self, options: MSSSIMOptions) -> None:
        self.options = options

    def compute(self, inputs: FidelityInputs) -> dict[str, Any]:
        out: dict[str, Any] = {"notes": []}
        synthetic = inputs.synthetic
        if inputs.reference is None:
            out["notes"].append(f"{NO_REFERENCE}: ms_ssim vs reference omitted")
        else:
            out["ms_ssim"] = float(
                ms_ssim_per_image(synthetic, inputs.reference, self.options).mean()
            )
        if len(synthetic) < 2:
            out["notes"].append("diversity_ms_ssim needs at least 2 synthetic images; omitted")
        else:
            first, second = self._pairs(len(synthetic))
            out["diversity_ms_ssim"] = float(
                ms_ssim_per_image(synthetic[first], synthetic[second], self.options).mean()
            )
        return out

    def _pairs(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``diversity_pairs`` random pairs of distinct indices, drawn from ``seed``."""
        rng = torch.Generator().manual_seed(self.options.seed)
        count = self.options.diversity_pairs
        first = torch.randint(0, n, (count,), generator=rng)
        second = (first + torch.randint(1, n, (count,), generator=rng)) % n  # never equal to first
        return first, second


class PSNR:
    """``psnr``: PSNR (dB) of the synthetic images against their references, from the MSE over
    the whole set; ``+inf`` (stored as ``"inf"`` in JSON) when every image equals its reference."""

    name = "psnr"

    def __init__(self, options: PSNROptions) -> None:
        self.options = options

    def compute(self, inputs: FidelityInputs) -> dict[str, Any]:
        if inputs.reference is None:
            return {"notes": [f"{NO_REFERENCE}: omitted"]}
        notes = []
        identical = int(torch.isinf(psnr(inputs.synthetic, inputs.reference, per_image=True)).sum())
        if identical:
            notes.append(
                f"{identical} of {len(inputs.synthetic)} synthetic images equal their reference pixel for pixel"
            )
        return {"psnr": float(psnr(inputs.synthetic, inputs.reference)), "notes": notes}
