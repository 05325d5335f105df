"""CASDM's class-aware losses (paper Eq. 6–8).

**Class weights (Eq. 7).** For one mask with ``n_c`` pixels of class ``c``,
``w_c = (HW / n_c) / Σ_j (HW / n_j)``, the sum running over the classes *present* in that mask
(an absent class has no pixels to weigh). :func:`class_weight_map` paints every pixel with its
class's ``w_c``: a rare class's pixels weigh more, and every present class gets the same total
weight (``n_c · w_c`` is the same for all ``c``).

**Class-aware MSE (Eq. 6).** Read as an MSE with those per-pixel weights, normalised per image:
``L = Σ_p W(p)·e(p) / Σ_p W(p)`` with ``e(p)`` the squared error at pixel ``p`` averaged over
channels. This equals the mean over present classes of each class's mean error, so every class
counts as much as the background. Why normalised: ``Σ_j HW/n_j`` in Eq. 7 grows with the rarest
class present, so an unnormalised weighted sum would make an image *with* a rare class count less
in the batch — the opposite of the intent; and reading Eq. 6 as ``Σ_c w_c · mean_c(e)`` would
put ~60 % of the weight on a 1 % artery and under 1 % on the background (77 % of toy-seg).

**Class-aware self-perceptual loss (Eq. 8).** The network's own encoder ``Φ`` (mask-free, see
:class:`~saadi_casdm.network.SemanticUNet`) compares ``x_t`` with the predicted clean image
re-noised by the *same* noise at the *same* timestep (``√ᾱ_t x̂_0 + √(1−ᾱ_t) ε``; the paper:
"adding identical random noise to both"), and the squared feature difference is weighted by the
weight map average-pooled to each feature size. Points Eq. 8 leaves open, decided here:

* ``pool(w_c)`` sits inside the square in Eq. 8, which would weigh by ``w_c²``; the weight is
  applied linearly, as in Eq. 6, so both losses weigh classes alike;
* each feature level contributes its mean weighted squared difference, and levels are averaged;
* gradients reach the network through ``x̂_0`` only: ``Φ`` is evaluated with detached weights
  (:func:`perceptual_features`), otherwise the cheapest way to lower the loss is to make the
  encoder's features constant. Lin & Yang's self-perceptual loss uses a frozen copy of the
  network for the same reason; the live, detached encoder is "the same encoder" the paper names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F


def class_weight_map(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-pixel weights ``(N, H, W)`` of Eq. 7 for class-id masks ``labels`` ``(N, H, W)``."""
    n, h, w = labels.shape
    counts = F.one_hot(labels.reshape(n, -1).long(), num_classes).sum(dim=1).float()  # (N, K)
    inverse = torch.where(counts > 0, (h * w) / counts.clamp_min(1.0), torch.zeros_like(counts))
    weights = inverse / inverse.sum(dim=1, keepdim=True)
    return torch.gather(weights, 1, labels.reshape(n, -1).long()).reshape(n, h, w)


def _pool_to(weights: torch.Tensor, size: int) -> torch.Tensor:
    """A weight map ``(N, H, W)`` average-pooled to ``(N, 1, size, size)``."""
    return F.adaptive_avg_pool2d(weights[:, None], size)


def class_aware_mse(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Eq. 6 (see the module docstring): per image ``Σ W·e / Σ W``, averaged over the batch.

    ``prediction``/``target`` may be at a coarser grid than ``weights`` (pixel-unshuffled
    latents ``(N, C·f², H/f, W/f)``): then the error of one latent cell is the mean over its
    channels, and the weight map is average-pooled to the cell grid — for ``f = 1`` this is
    exactly the per-pixel formula.
    """
    error = (prediction.float() - target.float()).pow(2).mean(dim=1, keepdim=True)
    pooled = _pool_to(weights, int(error.shape[-1]))
    return ((pooled * error).sum(dim=(1, 2, 3)) / pooled.sum(dim=(1, 2, 3)).clamp_min(1e-12)).mean()


def predicted_x0(
    scheduler: Any, x_t: torch.Tensor, output: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """``x̂_0`` from a network output in the scheduler's ``prediction_type`` (paper Eq. 10 for
    epsilon: ``(x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t``)."""
    kind = scheduler.config.prediction_type
    if kind == "sample":
        return output
    alphas = scheduler.alphas_cumprod.to(device=x_t.device, dtype=torch.float32)[timesteps.long()]
    alpha = alphas.sqrt().view(-1, 1, 1, 1)
    sigma = (1.0 - alphas).sqrt().view(-1, 1, 1, 1)
    if kind == "epsilon":
        return (x_t - sigma * output) / alpha
    if kind == "v_prediction":
        return alpha * x_t - sigma * output
    raise ValueError(f"unsupported prediction_type '{kind}' (epsilon, sample or v_prediction)")


class _EncoderView(torch.nn.Module):
    """The network's encoder as a module of its own, so ``functional_call`` can run it."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor) -> list[torch.Tensor]:
        return self.network.encoder_features(sample, timesteps)


def perceptual_features(
    network: torch.nn.Module, sample: torch.Tensor, timesteps: torch.Tensor
) -> list[torch.Tensor]:
    """``network.encoder_features(sample, timesteps)`` with the network's weights detached:
    gradients flow into ``sample`` only (see the module docstring)."""
    detached = {f"network.{name}": p.detach() for name, p in network.named_parameters()}
    return torch.func.functional_call(_EncoderView(network), detached, (sample, timesteps))


def class_aware_perceptual_loss(
    features: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    reference: Sequence[torch.Tensor],
    renoised_prediction: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Eq. 8 (see the module docstring): the mean over feature levels of
    ``Σ pool(W)·(Φ(x_t) − Φ(x̂_t))² / (Σ pool(W) · channels)`` per image, averaged over the batch.

    ``reference`` are the features ``Φ(x_t)`` (no gradient needed), ``features`` computes ``Φ`` of
    the re-noised prediction (with gradients into it), ``weights`` is the map of
    :func:`class_weight_map` at mask resolution.
    """
    predicted = features(renoised_prediction)
    levels = []
    for target, pred in zip(reference, predicted):
        pooled = _pool_to(weights, int(pred.shape[-1]))
        error = (target.detach().float() - pred.float()).pow(2).mean(dim=1, keepdim=True)
        levels.append(
            (pooled * error).sum(dim=(1, 2, 3)) / pooled.sum(dim=(1, 2, 3)).clamp_min(1e-12)
        )
    return torch.stack(levels).mean(dim=0).mean()
