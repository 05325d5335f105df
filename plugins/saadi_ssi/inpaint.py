"""The tensor operations of SSI's masked latent inpainting, shared by training, sampling and DPO.

One *view* inpaints one region (the pixels of one class) of one image under that class's prompt.
Its network input follows Stable Diffusion inpainting — noisy latent ‖ region mask ‖ masked-image
latent, concatenated on channels — with SAADi's training blend (paper Eq. 2)

    x̃_t = x_t ⊙ m + x_0 ⊙ (1 − m),

so the denoiser sees the known image *clean* outside the region and noise only inside it.

* :func:`latent_mask` brings a pixel mask to the latent grid by max-pooling: a latent cell is
  regenerated if any of its pixels belongs to the region, so thin structures (a 3-pixel artery)
  never vanish at the latent scale; pixels of other classes inside such a cell stay visible in the
  masked-image latent (masked pixels are exactly 0, which no uint8 image value maps to).
* :func:`masked_mse` is the training loss restricted to the region and normalised by its size, so
  a thin artery counts as much as a large gallbladder ("the objective is localised to the masked
  region", paper §3).
* :func:`exact_prediction` is what the network *should* output for a known latent; outside the
  region :func:`inpaint_predict` returns it instead of the network output. A sampler then keeps
  the known part exact, and Diffusion-DPO — which compares whole-latent errors — sees zero error
  outside the region for both the adapted and the reference network, so only the generated
  region drives the preference loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def latent_mask(pixel_mask: torch.Tensor, factor: int) -> torch.Tensor:
    """``(N, 1, H, W)`` {0, 1} pixel mask -> ``(N, 1, H/f, W/f)`` latent mask (max-pooled)."""
    return F.max_pool2d(pixel_mask, factor) if factor > 1 else pixel_mask


def masked_blend(x_t: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 2: ``x_t`` inside the region (``mask`` = 1), the clean ``x0`` outside."""
    return x_t * mask + x0 * (1.0 - mask)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over each row's region (all channels), averaged over rows.

    ``mask`` is ``(N, 1, h, w)``; rows with an empty region contribute 0.
    """
    squared = (prediction.float() - target.float()).pow(2) * mask
    area = mask.sum(dim=(1, 2, 3)) * prediction.shape[1]
    return (squared.sum(dim=(1, 2, 3)) / area.clamp_min(1.0)).mean()


def exact_prediction(
    scheduler: Any, x_t: torch.Tensor, x0: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """The ideal network output for ``x_t`` when the clean latent ``x0`` is known, in the
    scheduler's ``prediction_type``: ``x0`` ("sample"), ``ε = (x_t − α x0)/σ`` ("epsilon"),
    ``α ε − σ x0`` ("v_prediction"), with ``α² = ᾱ_t`` and ``σ² = 1 − ᾱ_t``."""
    kind = scheduler.config.prediction_type
    if kind == "sample":
        return x0
    alphas = scheduler.alphas_cumprod.to(device=x_t.device, dtype=torch.float32)[timesteps.long()]
    alpha = alphas.sqrt().view(-1, 1, 1, 1)
    sigma = (1.0 - alphas).sqrt().view(-1, 1, 1, 1)
    eps = (x_t.float() - alpha * x0.float()) / sigma
    if kind == "epsilon":
        return eps
    if kind == "v_prediction":
        return alpha * eps - sigma * x0.float()
    raise ValueError(f"unsupported prediction_type '{kind}' (epsilon, sample or v_prediction)")


def unet_input(
    x_t: torch.Tensor, mask: torch.Tensor, masked_latent: torch.Tensor, context: torch.Tensor
) -> torch.Tensor:
    """The inpainting UNet's input: Eq. 2 blend ‖ region mask ‖ masked-image latent (SD's order)."""
    blended = masked_blend(x_t, context, mask)
    return torch.cat([blended, mask.to(blended.dtype), masked_latent.to(blended.dtype)], dim=1)


def inpaint_predict(
    unet: Any,
    scheduler: Any,
    x_t: torch.Tensor,
    timesteps: torch.Tensor,
    mask: torch.Tensor,
    masked_latent: torch.Tensor,
    context: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
) -> torch.Tensor:
    """One view's prediction: the network inside the region, :func:`exact_prediction` of the
    known ``context`` latent outside it."""
    out = unet(
        unet_input(x_t, mask, masked_latent, context),
        timesteps,
        encoder_hidden_states=encoder_hidden_states,
    ).sample
    return mask * out.float() + (1.0 - mask) * exact_prediction(scheduler, x_t, context, timesteps)
