"""SSD — Surgical Stable Diffusion: a text-conditioned latent diffusion generator (paper Stage 1).

One condition per class, prompted ``prompt_template`` (default the paper's "An image of {class}
in laparoscopic gynecological surgery"). The model is a diffusers ``UNet2DConditionModel``
denoising autoencoder latents under cross-attention to CLIP text-encoder states; it is either
built from config and trained here (``tiny``) or fine-tuned from a local Stable Diffusion
directory (``paper``). See :mod:`saadi_core.diffusion.latent` for the parts and the saved layout
(``ssd.json``) and :mod:`saadi_core.diffusion.latent_generator` for what SSD shares with the other
latent diffusion generators.

Sampling goes through ``self.model.unet`` — the very module :meth:`SSDTarget.trainable_module`
returns — so LoRA adapters an aligner attaches there are used by :meth:`SSDGenerator.sample`.
The EMA average is copied into that module at the end of training and is what ``save`` writes:
there is exactly one set of sampling weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from saadi_core.diffusion.builders import resize_images
from saadi_core.diffusion.latent import LatentDiffusionModel
from saadi_core.diffusion.latent_generator import LatentDiffusionGenerator, LatentDiffusionTarget
from saadi_core.diffusion.sampling import (
    build_sampling_scheduler,
    denoise,
    initial_noise,
    map_fixed_batches,
)
from saadi_core.errors import ConfigError, DataError, PipelineError
from saadi_core.interfaces import Condition, RunContext, Sample
from saadi_ssd.options import SSDOptions
from saadi_ssd.training import train_model

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.dataset import Dataset


class SSDGenerator(LatentDiffusionGenerator):
    """Class-prompted latent diffusion (UNet2DConditionModel + autoencoder + CLIP text encoder)."""

    kind = "ssd"
    name = "ssd"

    def __init__(self, options: SSDOptions, context: RunContext | None = None) -> None:
        super().__init__(options, context)
        self.options: SSDOptions = options

    # ------------------------------------------------------------------ conditions / prompts

    def conditions(self, dataset: Dataset) -> list[Condition]:
        return [
            Condition(id=f"class:{name}", class_id=i, class_name=name, prompt=self.prompt(name))
            for i, name in enumerate(dataset.class_names)
        ]

    def _prompt_for(self, condition: Condition) -> str:
        if condition.prompt is not None:
            return condition.prompt
        if condition.class_name is not None:
            return self.prompt(condition.class_name)
        raise PipelineError(
            f"ssd needs a class prompt, but condition '{condition.id}' has neither prompt nor class_name"
        )

    # ------------------------------------------------------------------ training

    def _check_dataset(self, dataset: Dataset) -> None:
        if dataset.task != "classification" or dataset.train.labels is None:
            raise ConfigError(
                f"generator 'ssd' generates from class prompts and needs a classification dataset; "
                f"'{dataset.name}' is {dataset.task} (use a mask-conditioned generator such as ssi)"
            )
        if len(dataset.train) == 0:
            raise DataError(f"dataset '{dataset.name}': the train split is empty")

    @property
    def _text_time_embedding(self) -> bool:
        return self.options.unet_text_time_embedding

    def _train(
        self, model: LatentDiffusionModel, dataset: Dataset, prompts: list[str], accelerator: Any
    ) -> list[dict[str, float]]:
        assert dataset.train.labels is not None
        return train_model(
            model,
            dataset.train.images,
            dataset.train.labels,
            prompts,
            self.options,
            accelerator,
            self.context.progress,
        )

    # ------------------------------------------------------------------ sampling

    def _predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return (
            self.require_model()
            .unet(x_t, t, encoder_hidden_states=cond["encoder_hidden_states"])
            .sample
        )

    def sample(
        self, conditions: Sequence[Condition], n_per_condition: int, seed: int
    ) -> list[Sample]:
        """``n_per_condition`` images per condition; sample ``i`` of condition ``c`` starts from
        noise seeded by ``(seed, c.id, i)`` and is denoised in fixed-size batches, so it is
        bit-identical however many samples are requested together."""
        model = self.require_model()
        if n_per_condition < 1 or not conditions:
            return []
        device = self.device
        items = [(c, i) for c in conditions for i in range(n_per_condition)]
        keys = [(c.id, i) for c, i in items]
        noise = initial_noise(seed, keys, model.latent_shape, device=device)
        embeddings = self.embed_prompts([self._prompt_for(c) for c, _ in items])
        guidance = self.options.guidance_scale
        uncond = {"encoder_hidden_states": self.embed_prompts([""])} if guidance != 1.0 else None
        scheduler = build_sampling_scheduler(model.noise_scheduler.config, self.options.sampler)
        model.unet.eval()

        def run(noise_chunk: torch.Tensor, emb_chunk: torch.Tensor) -> torch.Tensor:
            latents = denoise(
                self._predict,
                scheduler,
                noise_chunk,
                {"encoder_hidden_states": emb_chunk},
                self.options.sampling_steps,
                guidance_scale=guidance,
                uncond=uncond,
            )
            with torch.no_grad():
                images = model.autoencoder.decode(latents)
            return resize_images(images.float(), self.image_size or model.resolution).clamp(
                -1.0, 1.0
            )

        steps = range(0, len(items), self.options.sample_batch_size)
        images = []
        for start in self.context.progress.track(steps, "sample ssd", total=len(steps)):
            stop = start + self.options.sample_batch_size
            images.append(
                map_fixed_batches(
                    run, [noise[start:stop], embeddings[start:stop]], self.options.sample_batch_size
                )
            )
        stacked = torch.cat(images).cpu()
        return [
            Sample(
                image=stacked[j].contiguous(), condition=c, generator=self.kind, seed=seed, index=i
            )
            for j, (c, i) in enumerate(items)
        ]

    # ------------------------------------------------------------------ alignment

    def diffusion_target(self) -> SSDTarget:
        self.require_model()
        return SSDTarget(self)


class SSDTarget(LatentDiffusionTarget):
    """The :class:`~saadi_core.interfaces.DiffusionTarget` view of an SSD generator.

    ``encode`` is deterministic (resize to the model resolution, autoencoder mode/unshuffle, text
    states of each sample's prompt) and gradient-free; ``predict`` runs the generator's own UNet,
    so adapters on :meth:`trainable_module` are what both DPO and sampling use.
    """

    generator: SSDGenerator

    @torch.no_grad()
    def encode(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        gen = self.generator
        model = gen.require_model()
        images = torch.stack([s.image for s in samples]).to(device=gen.device, dtype=torch.float32)
        chunk = gen.options.sample_batch_size
        x0 = torch.cat(
            [
                model.autoencoder.encode(resize_images(images[i : i + chunk], model.resolution))
                for i in range(0, len(images), chunk)
            ]
        ).float()
        states = gen.embed_prompts([gen._prompt_for(s.condition) for s in samples])
        return x0, {"encoder_hidden_states": states}

    def predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return self.generator._predict(x_t, t, cond)
