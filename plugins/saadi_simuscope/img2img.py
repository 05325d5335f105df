"""Image-to-image sampling: start from a noised simulator frame instead of pure noise.

img2img with ``strength`` s runs the last ``round(s · steps)`` steps of a sampler's schedule,
starting from the frame's latent noised to the first of them (``add_noise`` at that timestep), so
the frame's layout and colours survive in proportion to ``1 − s``.
:class:`StrengthSchedule` is that truncated schedule behind the scheduler surface
:func:`saadi_core.diffusion.sampling.denoise` drives (``set_timesteps``, ``timesteps``,
``init_noise_sigma``, ``scale_model_input``, ``step``), so img2img reuses the toolkit's
deterministic, guided denoising loop unchanged: its "noise" argument is the noised frame.
"""

from __future__ import annotations

from typing import Any

import torch


class StrengthSchedule:
    """The last ``strength`` share of ``scheduler``'s timesteps (a DDIM or DPM-Solver++
    scheduler from :func:`~saadi_core.diffusion.sampling.build_sampling_scheduler`)."""

    #: the input is an already noised latent, not unit noise to be scaled
    init_noise_sigma = 1.0

    def __init__(self, scheduler: Any, strength: float) -> None:
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        self.scheduler = scheduler
        self.strength = float(strength)
        self.timesteps: torch.Tensor = torch.empty(0, dtype=torch.long)

    def steps_run(self, num_steps: int) -> int:
        """Steps actually run out of a ``num_steps`` schedule (at least one)."""
        return max(1, min(num_steps, round(self.strength * num_steps)))

    def set_timesteps(self, num_steps: int, device: str | torch.device | None = None) -> None:
        self.scheduler.set_timesteps(num_steps, device=device)
        start = num_steps - self.steps_run(num_steps)
        self.timesteps = self.scheduler.timesteps[start:]
        if hasattr(self.scheduler, "set_begin_index"):  # multistep solvers track their position
            self.scheduler.set_begin_index(start)

    def start(self, latents: torch.Tensor, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        """``latents`` noised to the first timestep that :meth:`set_timesteps` keeps."""
        self.set_timesteps(num_steps, device=latents.device)
        t = self.timesteps[:1].expand(latents.shape[0])
        return self.scheduler.add_noise(latents, noise, t)

    def scale_model_input(self, sample: torch.Tensor, timestep: Any) -> torch.Tensor:
        return self.scheduler.scale_model_input(sample, timestep)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor) -> Any:
        return self.scheduler.step(model_output, timestep, sample)
