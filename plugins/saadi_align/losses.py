"""The per-batch objectives of ``sft-winners`` and ``diffusion-kto`` (Diffusion-DPO's lives in
:mod:`saadi_core.diffusion.dpo`). Both compare the network output with the generator's own
training target (:func:`saadi_core.diffusion.targets.training_target`) through the same
per-sample squared error as Diffusion-DPO, so their errors mean the same thing.

Diffusion-KTO (Li et al. 2024, "Aligning Diffusion Models by Optimizing Human Utility"), per
sample ``i`` with label ``y_i`` (desirable or not)::

    g_i  = err_ref(x_i) − err_θ(x_i)                 how much better the model fits x_i than the base
    z    = max(0, mean_i g_i)   (no gradient)        reference point: a batch estimate of the KL term
    u_i  = σ( β (g_i − z))      if desirable          utility (sigmoid value function)
         = σ(−β (g_i − z))      if undesirable
    L    = mean_i  λ_{y_i} (1 − u_i)

Each sample is judged on its own against the reference point, so a condition with only winners
(or only losers) still teaches something, and no pairing is needed. ``β`` is in the units of
Diffusion-DPO's Eq. 4 β (both multiply a difference of per-element mean squared errors). At
initialisation (LoRA B = 0) every ``g_i = 0`` and ``L = ½ · mean λ`` (0.5 with unit weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saadi_align.training import per_sample_error

__all__ = ["KTOLossOutput", "diffusion_kto_loss", "sft_loss"]


def sft_loss(
    model_pred: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """The plain diffusion loss: mean over samples of the per-sample squared error."""
    err = per_sample_error(model_pred, target)
    loss = err.mean()
    return loss, {"loss": float(loss.detach())}


@dataclass(frozen=True)
class KTOLossOutput:
    """The loss to back-propagate and detached diagnostics (floats; batch means).

    ``reference_point``: ``z`` above. ``reward_desirable``/``reward_undesirable``: mean implicit
    reward ``β g`` of each group (``None`` when the batch has none) — alignment should raise the
    first and lower the second. ``accuracy``: share of samples on the right side of ``z``."""

    loss: torch.Tensor
    reference_point: float
    reward_desirable: float | None
    reward_undesirable: float | None
    accuracy: float
    model_error: float
    ref_error: float
    share_desirable: float

    def metrics(self) -> dict[str, float]:
        out = {
            "loss": float(self.loss.detach()),
            "reference_point": self.reference_point,
            "accuracy": self.accuracy,
            "model_error": self.model_error,
            "ref_error": self.ref_error,
            "share_desirable": self.share_desirable,
        }
        for key in ("reward_desirable", "reward_undesirable"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def diffusion_kto_loss(
    model_pred: torch.Tensor,
    ref_pred: torch.Tensor,
    target: torch.Tensor,
    desirable: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> KTOLossOutput:
    """Diffusion-KTO with the sigmoid value function for a batch of ``N`` samples (module
    docstring). ``desirable`` is a boolean ``(N,)``; ``ref_pred`` needs no gradient."""
    if model_pred.shape != target.shape or ref_pred.shape != target.shape:
        raise ValueError(
            f"model_pred {tuple(model_pred.shape)}, ref_pred {tuple(ref_pred.shape)} and target "
            f"{tuple(target.shape)} must have the same shape"
        )
    desirable = desirable.to(device=target.device, dtype=torch.bool).reshape(-1)
    if desirable.numel() != target.shape[0]:
        raise ValueError(f"{desirable.numel()} labels for {target.shape[0]} samples")
    model_err = per_sample_error(model_pred, target)
    ref_err = per_sample_error(ref_pred, target).detach()
    gain = ref_err - model_err
    point = gain.mean().detach().clamp(min=0)
    sign = desirable.float() * 2 - 1
    utility = torch.sigmoid(sign * beta * (gain - point))
    weight = torch.where(
        desirable, torch.tensor(desirable_weight), torch.tensor(undesirable_weight)
    ).to(utility)
    loss = (weight * (1 - utility)).mean()
    with torch.no_grad():
        reward = beta * gain
        return KTOLossOutput(
            loss=loss,
            reference_point=float(point),
            reward_desirable=float(reward[desirable].mean()) if desirable.any() else None,
            reward_undesirable=float(reward[~desirable].mean()) if (~desirable).any() else None,
            accuracy=float((sign * (gain - point) > 0).float().mean()),
            model_error=float(model_err.mean()),
            ref_error=float(ref_err.mean()),
            share_desirable=float(desirable.float().mean()),
        )
