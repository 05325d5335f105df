"""The two training stages of a SimuScope model.

1. **Control stage** (``max_steps``): teach the ControlNet to turn a simulator frame into the real
   frame it depicts, on pairs (toy-simulator render of a training mask -> that mask's real
   image), with the scene prompt of the mask. When the UNet was built from config (``tiny``:
   there is no pretrained Stable Diffusion to start from) it is trained jointly — this stage then
   stands in for "pretrained SD + ControlNet"; ``control_dropout`` of the examples are trained
   without control so the UNet also denoises real frames on its own. A pretrained UNet stays
   frozen, as in ControlNet training.
2. **Style stage** (``style_steps``): SimuScope's LoRA on the UNet learnt from
   ``n_style_frames`` real frames with the plain text-to-image loss (no control), then fused into
   the UNet's weights. Fusing keeps one set of sampling weights and leaves the UNet free of peft
   adapters, so Diffusion-DPO can later attach its own (``saadi_dpo``) with the styled UNet as
   its frozen reference.

Both stages run in :class:`saadi_core.diffusion.latent_training.LatentTrainingLoop` (optimiser,
warm-up, clipping, EMA, ``accelerate``), handed a :class:`StageNetwork` as "the UNet": its
forward is the stage's network and ``requires_grad_`` reaches only the parameters the stage
trains, so the loop's optimiser and EMA never move the rest. Both use
:func:`saadi_core.diffusion.targets.training_target`, the target Diffusion-DPO uses too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saadi_core.diffusion.builders import random_flips, resize_images, resize_masks
from saadi_core.diffusion.latent import LatentDiffusionModel
from saadi_core.diffusion.latent_training import LatentTrainingLoop
from saadi_core.diffusion.lora import attach_lora, lora_config
from saadi_core.diffusion.targets import training_target
from saadi_core.interfaces import ProgressReporter
from saadi_simuscope.control import control_image
from saadi_simuscope.network import ControlledUNet
from saadi_simuscope.options import SimuScopeOptions

#: peft adapter name of the style LoRA while it trains (fused and removed afterwards)
STYLE_ADAPTER = "simuscope_style"


class StageNetwork(nn.Module):
    """A training stage's network as :class:`LatentTrainingLoop` sees it ("the UNet")."""

    def __init__(self, network: nn.Module, trained: Iterable[nn.Parameter]) -> None:
        super().__init__()
        self.network = network
        self._trained = {id(p) for p in trained}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.network(*args, **kwargs)

    def requires_grad_(self, requires_grad: bool = True) -> StageNetwork:
        for p in self.network.parameters():
            p.requires_grad_(requires_grad and id(p) in self._trained)
        return self

    def _diffusers_models(self) -> list[Any]:
        return [
            m
            for m in self.network.modules()
            if getattr(m, "_supports_gradient_checkpointing", False)
        ]

    def enable_gradient_checkpointing(self) -> None:
        for model in self._diffusers_models():
            model.enable_gradient_checkpointing()

    def disable_gradient_checkpointing(self) -> None:
        for model in self._diffusers_models():
            model.disable_gradient_checkpointing()


@dataclasses.dataclass
class TrainingPairs:
    """Real frames ``uint8 (N, H, W, 3)`` with their simulator frames (same shape), labels
    ``int64 (N, H, W)`` and the index of each frame's scene prompt."""

    images: np.ndarray
    sim_frames: np.ndarray
    labels: np.ndarray
    prompt_rows: np.ndarray


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return (
        torch.from_numpy(np.ascontiguousarray(images))
        .permute(0, 3, 1, 2)
        .float()
        .div(127.5)
        .sub(1.0)
    )


def gather_rows(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table[rows]`` as a one-hot matrix product. The backward of advanced indexing with repeated
    rows is a scatter-add that PyTorch parallelises on CPU once the gradient exceeds its grain size
    (32 rows of 17 x 64 prompt states do), and its summation order then varies between processes:
    training stopped being reproducible. A matrix product's backward sums in a fixed order."""
    one_hot = F.one_hot(rows, table.shape[0]).to(table.dtype)
    return torch.einsum("bk,k...->b...", one_hot, table)


def train_control(
    model: LatentDiffusionModel,
    controlnet: Any,
    pairs: TrainingPairs,
    prompts: list[str],
    num_classes: int,
    train_unet: bool,
    options: SimuScopeOptions,
    accelerator: Any,
    progress: ProgressReporter,
) -> list[dict[str, float]]:
    """The control stage (see the module docstring); trains in place, returns the history."""
    network = ControlledUNet(model.unet, controlnet)
    trained = [*controlnet.parameters(), *(model.unet.parameters() if train_unet else [])]
    stage = dataclasses.replace(model, unet=StageNetwork(network, trained))
    loop = LatentTrainingLoop(
        stage, prompts, options, accelerator, progress, name="simuscope-control"
    )
    device = accelerator.device
    images, sims, labels = (
        _to_tensor(pairs.images),
        _to_tensor(pairs.sim_frames),
        torch.from_numpy(pairs.labels).long(),
    )
    prompt_rows = torch.from_numpy(pairs.prompt_rows).long()
    rng = torch.Generator().manual_seed(options.seed + 1 + accelerator.process_index)
    scheduler = model.noise_scheduler
    num_timesteps = int(scheduler.config.num_train_timesteps)
    batch = options.batch_size

    for _ in loop.steps():
        pick = torch.randint(0, len(images), (batch,), generator=rng)
        x, sim, label = images[pick], sims[pick], labels[pick]
        if options.random_flip:
            x, sim, label = random_flips(rng, x, sim, label)
        drop_prompt = torch.rand(batch, generator=rng) < options.prompt_dropout
        rows = torch.where(
            drop_prompt, torch.full_like(pick, loop.uncond_index), prompt_rows[pick]
        ).to(device)
        keep_control = (
            (torch.rand(batch, generator=rng) >= options.control_dropout)
            .float()
            .view(-1, 1, 1, 1)
            .to(device)
        )
        noise = torch.randn((batch, *model.latent_shape), generator=rng).to(device)
        t = torch.randint(0, num_timesteps, (batch,), generator=rng).to(device)

        x = resize_images(x.to(device), model.resolution)
        control = control_image(
            options.control_input,
            resize_images(sim.to(device), model.resolution),
            resize_masks(label.to(device), model.resolution),
            num_classes,
        )
        with torch.no_grad():
            x0 = model.autoencoder.encode(x).float()
        x_t = scheduler.add_noise(x0, noise, t)
        states = gather_rows(loop.prompt_states(), rows)
        with accelerator.autocast():
            prediction = loop.unet(
                x_t, t, states, control, control_scale=keep_control * options.control_scale
            )
        loop.update(F.mse_loss(prediction.float(), training_target(scheduler, x0, noise, t)))
    return loop.finish()


class UNetOnly(nn.Module):
    """A UNet as a module returning the plain prediction tensor (the style stage's network)."""

    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, encoder_hidden_states=states).sample


def train_style(
    model: LatentDiffusionModel,
    images: np.ndarray,
    prompt_rows: np.ndarray,
    prompts: list[str],
    options: SimuScopeOptions,
    accelerator: Any,
    progress: ProgressReporter,
) -> list[dict[str, float]]:
    """The style stage: a LoRA on ``model.unet`` learnt from ``images`` (``uint8 (N, H, W, 3)``,
    prompt ``prompts[prompt_rows[i]]``), fused into the UNet at the end. Returns the history."""
    unet = model.unet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        params = attach_lora(
            unet, lora_config(options.style_target_modules, options.style_rank), STYLE_ADAPTER
        )
    stage_options = options.model_copy(
        update={
            "max_steps": options.style_steps,
            "learning_rate": options.style_learning_rate,
            "train_text_encoder": False,
            "ema_decay": 0.0,
        }
    )
    stage = dataclasses.replace(model, unet=StageNetwork(UNetOnly(unet), params))
    loop = LatentTrainingLoop(
        stage, prompts, stage_options, accelerator, progress, name="simuscope-style"
    )
    device = accelerator.device
    frames = _to_tensor(images)
    rows_of = torch.from_numpy(prompt_rows).long()
    rng = torch.Generator().manual_seed(options.seed + 2 + accelerator.process_index)
    scheduler = model.noise_scheduler
    num_timesteps = int(scheduler.config.num_train_timesteps)
    batch = options.batch_size

    for _ in loop.steps():
        pick = torch.randint(0, len(frames), (batch,), generator=rng)
        x = frames[pick]
        if options.random_flip:
            (x,) = random_flips(rng, x)
        drop = torch.rand(batch, generator=rng) < options.prompt_dropout
        rows = torch.where(drop, torch.full_like(pick, loop.uncond_index), rows_of[pick]).to(device)
        noise = torch.randn((batch, *model.latent_shape), generator=rng).to(device)
        t = torch.randint(0, num_timesteps, (batch,), generator=rng).to(device)
        with torch.no_grad():
            x0 = model.autoencoder.encode(resize_images(x.to(device), model.resolution)).float()
        x_t = scheduler.add_noise(x0, noise, t)
        with accelerator.autocast():
            prediction = loop.unet(x_t, t, gather_rows(loop.prompt_states(), rows))
        loop.update(F.mse_loss(prediction.float(), training_target(scheduler, x0, noise, t)))
    history = loop.finish()
    unet.fuse_lora(adapter_names=[STYLE_ADAPTER])
    unet.unload_lora()
    return history
