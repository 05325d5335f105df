"""The Diffusion-DPO objective (SAADi paper Eq. 4, after Wallace et al. 2024) as one public function.

Every diffusion aligner computes its loss here so the β convention, the per-sample reduction and
the logged metrics mean the same thing everywhere.

β convention (``beta`` is Eq. 4's β)::

    err_θ(x) = mean over non-batch dims of (target − pred_θ(x_t))²      (per sample)
    Δ^w      = err_θ(x^w) − err_ref(x^w)        Δ^l = err_θ(x^l) − err_ref(x^l)
    L        = −log σ(−β (Δ^w − Δ^l))           (mean over the batch)

The diffusers SD-XL research example and the original authors' launcher write the same loss as
``−logσ(−½·beta_dpo·(Δ^w − Δ^l))``, so ``beta = beta_dpo / 2`` (their ``beta_dpo = 5000`` is
``beta = 2500`` here). Because Δ is a difference of per-element mean squared errors (≈ 10⁻⁴…10⁻²),
β ~ 10³–10⁴ is normal for diffusion — it is *not* comparable with LLM DPO's β ≈ 0.1.

When the adapted model equals the reference (LoRA with B = 0), Δ^w = Δ^l = 0 and L = ln 2 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["DPOLossOutput", "diffusion_dpo_loss", "per_sample_error"]


@dataclass(frozen=True)
class DPOLossOutput:
    """The loss to back-propagate plus detached diagnostics (Python floats, batch means).

    ``implicit_accuracy``: share of pairs with Δ^w < Δ^l (the model moved towards the winner more
    than towards the loser, relative to the reference); 0 at initialisation, where Δ^w = Δ^l.
    ``reward_margin``: mean of the implicit reward gap −β (Δ^w − Δ^l) (> 0 favours winners).
    ``model_error_w``/``model_error_l``/``ref_error_w``/``ref_error_l``: mean per-sample squared
    errors of the adapted model and of the reference on winners and losers — watch
    ``model_error_w − ref_error_w``: a rising winner error means the model drifts away from the
    data rather than towards the winners (see docs/method.md, "DPO drifted").
    ``dpo_loss`` is Eq. 4 alone; ``sft`` the mean Δ^w used by the optional regulariser;
    ``loss`` = ``dpo_loss`` + ``sft_weight · β · sft`` (differentiable).
    """

    loss: torch.Tensor
    dpo_loss: float
    sft: float
    implicit_accuracy: float
    reward_margin: float
    model_error_w: float
    model_error_l: float
    ref_error_w: float
    ref_error_l: float

    def metrics(self) -> dict[str, float]:
        """The diagnostics as a flat dict (``loss`` included as a float) for logs and history."""
        return {
            "loss": float(self.loss.detach()),
            "dpo_loss": self.dpo_loss,
            "sft": self.sft,
            "implicit_accuracy": self.implicit_accuracy,
            "reward_margin": self.reward_margin,
            "model_error_w": self.model_error_w,
            "model_error_l": self.model_error_l,
            "ref_error_w": self.ref_error_w,
            "ref_error_l": self.ref_error_l,
        }


def per_sample_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample (over every non-batch dim), in float32."""
    # fp32: under bf16 autocast the model/reference difference is far below bf16 resolution
    return (target.float() - pred.float()).pow(2).flatten(1).mean(dim=1)


def diffusion_dpo_loss(
    model_pred: torch.Tensor,
    ref_pred: torch.Tensor,
    target: torch.Tensor,
    beta: float,
    sft_weight: float = 0.0,
) -> DPOLossOutput:
    """Diffusion-DPO loss (paper Eq. 4) for a batch of ``B`` pairs laid out as ``2B`` rows.

    Rows ``0..B-1`` are winners, rows ``B..2B-1`` their losers (row ``i`` pairs with ``i + B``),
    noised with the SAME noise and timestep — the layout of one concatenated forward pass.
    ``model_pred``/``ref_pred``/``target`` have the same shape ``(2B, ...)``; ``target`` is the
    network's regression target (see :func:`saadi_core.diffusion.targets.training_target`);
    ``ref_pred`` needs no gradient (e.g. computed under ``torch.inference_mode``).

    ``beta`` is Eq. 4's β (module docstring: ``beta = beta_dpo / 2`` of the diffusers example).

    ``sft_weight`` (default 0 = off) adds a winner-likelihood term ``sft_weight · β · mean(Δ^w)``.
    Its gradient is that of the winners' plain denoising loss (the reference part is constant); it
    counters the drift where DPO raises the error on winners *and* losers and wins only by raising
    the losers' more. Scaling by β makes the weight independent of β: at initialisation Eq. 4
    pushes Δ^w with weight β/2, so ``sft_weight = 0.5`` doubles the pull towards the winners.
    """
    if model_pred.shape != target.shape or ref_pred.shape != target.shape:
        raise ValueError(
            f"model_pred {tuple(model_pred.shape)}, ref_pred {tuple(ref_pred.shape)} and target "
            f"{tuple(target.shape)} must have the same shape"
        )
    if target.shape[0] % 2:
        raise ValueError(
            f"expected winners then losers (an even batch), got {target.shape[0]} rows"
        )
    model_err = per_sample_error(model_pred, target)
    ref_err = per_sample_error(ref_pred, target).detach()
    model_w, model_l = model_err.chunk(2)
    ref_w, ref_l = ref_err.chunk(2)
    delta_w = model_w - ref_w
    delta_l = model_l - ref_l
    inside = -beta * (delta_w - delta_l)
    dpo = -F.logsigmoid(inside).mean()
    sft = delta_w.mean()
    loss = dpo + sft_weight * beta * sft if sft_weight else dpo
    with torch.no_grad():
        return DPOLossOutput(
            loss=loss,
            dpo_loss=float(dpo),
            sft=float(sft),
            implicit_accuracy=float((delta_w < delta_l).float().mean()),
            reward_margin=float(inside.mean()),
            model_error_w=float(model_w.mean()),
            model_error_l=float(model_l.mean()),
            ref_error_w=float(ref_w.mean()),
            ref_error_l=float(ref_l.mean()),
        )
