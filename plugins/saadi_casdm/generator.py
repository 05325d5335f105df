"""CASDM — Class-Aware Semantic Diffusion Model: a whole image generated for a segmentation map.

Unlike ``ssi``, which inpaints regions into a real image, CASDM paints every pixel, background
included, from noise; the mask enters through the SPADE decoder of its
:class:`~saadi_casdm.network.SemanticUNet`. The sample's mask is its conditioning mask, so a
segmentation selector scores it by the Dice of its prediction against that mask and the toy-seg
oracle checks the image against it.

**Conditions** (option ``conditions``): ``training-masks`` (default) — a seeded subset of
``n_conditions`` training masks, ids ``mask:{image id}``; ``generated-layouts`` — for the same
subset, a *new* mask drawn by the layout generator (:mod:`saadi_casdm.layout`) from that training
mask's per-class description, ids ``layout:{image id}`` (the layout is a function of the options'
seed and the id); ``both`` — the two lists, training masks first. Any condition with a class-id
``mask`` works with :meth:`CASDMGenerator.sample`.

**Sampling**: DPM-Solver++ (second order, ``sampling_steps``) from noise seeded by
``(seed, condition id, index)``, the network run on fixed-size chunks, so every sample is a
function of ``(seed, c, i)`` alone. Every forward goes through ``self.model.network`` — the module
:meth:`CASDMTarget.trainable_module` returns — so adapters an aligner puts there are sampled.

**Alignment**: :meth:`CASDMGenerator.diffusion_target` exposes the *image* network; Diffusion-DPO
aligns how images realise a mask. The layout model is not aligned (a selector scores images
against masks, not masks themselves); an aligned generator draws the same layouts as its base.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from saadi_casdm.layout import LAYOUT_DIR, LayoutGenerator, describe_mask
from saadi_casdm.model import CASDMModel, build_model, load_model, save_model
from saadi_casdm.options import CASDMOptions
from saadi_casdm.training import train_network
from saadi_core.diffusion.builders import make_accelerator, resize_images, resize_masks
from saadi_core.diffusion.sampling import (
    build_sampling_scheduler,
    denoise,
    initial_noise,
    map_fixed_batches,
    sample_seed,
)
from saadi_core.errors import ConfigError, PipelineError
from saadi_core.interfaces import Condition, Generator, RunContext, Sample

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.dataset import Dataset

#: LoRA targets of :meth:`CASDMTarget.lora_target_modules`: every ResNet convolution (encoder
#: and SPADE decoder), the bottleneck attention, and the SPADE modulation convolutions
LORA_TARGET_MODULES = ["conv1", "conv2", "to_q", "to_k", "to_v", "to_out.0", "gamma", "beta"]


def check_dataset(dataset: Dataset) -> None:
    """Clear errors for datasets CASDM cannot train on (before any work)."""
    dataset.require_training_masks(
        "generator 'casdm' generates images for segmentation masks",
        " (use a class-prompted generator such as ssd)",
    )


def condition_indices(n_total: int, n_conditions: int | None, seed: int) -> list[int]:
    """The training images whose masks are conditions: a seeded subset, in dataset order."""
    if n_conditions is None or n_conditions >= n_total:
        return list(range(n_total))
    order = np.random.default_rng(sample_seed(seed, "casdm-conditions", n_total)).permutation(
        n_total
    )
    return sorted(int(i) for i in order[:n_conditions])


class CASDMGenerator(Generator):
    """SPADE-conditioned diffusion with class-aware losses, plus an optional layout generator."""

    kind = "casdm"

    def __init__(self, options: CASDMOptions, context: RunContext | None = None) -> None:
        super().__init__(options, context)
        self.options: CASDMOptions = options
        self.model: CASDMModel | None = None
        self.layout: LayoutGenerator | None = None
        self.class_names: list[str] = []
        self.image_size: int | None = None
        self.history: list[dict[str, float]] = []
        self.layout_history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ training

    def _initial_model(self, dataset: Dataset) -> CASDMModel:
        if self.options.pretrained is None:
            return build_model(
                self.options, dataset.num_classes, self.options.resolution or dataset.image_size
            )
        model, meta = load_model(Path(self.options.pretrained).expanduser())
        if model.num_classes != dataset.num_classes:
            raise ConfigError(
                f"casdm option 'pretrained' ({self.options.pretrained}) was trained for {model.num_classes} classes "
                f"{meta.get('class_names')}, but dataset '{dataset.name}' has {dataset.num_classes}"
            )
        return model

    def fit(self, dataset: Dataset) -> None:
        """Train the image network (and the layout model when ``conditions`` uses layouts) on
        ``dataset.train``."""
        check_dataset(dataset)
        assert dataset.train.masks is not None
        accelerator = make_accelerator(
            self.context.accelerator,
            self.context.device,
            self.options.mixed_precision,
            who="generator 'casdm'",
        )
        model = self._initial_model(dataset)
        self.history = train_network(
            model,
            dataset.train.images,
            dataset.train.masks,
            self.options,
            accelerator,
            self.context.progress,
        )
        self.model = model
        self.class_names = list(dataset.class_names)
        self.image_size = dataset.image_size
        self.layout = None
        if self.options.conditions != "training-masks":
            self.layout, self.layout_history = LayoutGenerator.train(
                dataset.train.masks,
                dataset.class_names,
                self.options,
                self.context.accelerator,
                self.context.device,
                self.context.progress,
            )

    # ------------------------------------------------------------------ model access

    def require_model(self) -> CASDMModel:
        if self.model is None:
            raise PipelineError("generator 'casdm' has no weights yet: call fit() or load() first")
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.require_model().network.parameters()).device

    def _label_map(self, mask: torch.Tensor | None, where: str) -> torch.Tensor:
        """A condition's mask at the model's resolution (validated)."""
        if mask is None:
            raise PipelineError(
                f"generator 'casdm' generates an image for a mask, but {where} has no mask"
            )
        if mask.dim() != 2 or mask.is_floating_point():
            raise PipelineError(
                f"casdm: the mask of {where} must be an integer (H, W) class map, got {mask.dtype} {tuple(mask.shape)}"
            )
        n_classes = self.require_model().num_classes
        if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) >= n_classes):
            raise PipelineError(
                f"casdm: the mask of {where} holds class ids outside [0, {n_classes})"
            )
        return resize_masks(mask[None].long().to(self.device), self.require_model().resolution)[0]

    # ------------------------------------------------------------------ conditions

    def conditions(self, dataset: Dataset) -> list[Condition]:
        check_dataset(dataset)
        split = dataset.train
        assert split.masks is not None
        picks = condition_indices(len(split), self.options.n_conditions, self.options.seed)
        conditions: list[Condition] = []
        if self.options.conditions in ("training-masks", "both"):
            for i in picks:
                mask = torch.from_numpy(np.ascontiguousarray(split.masks[i])).long()
                conditions.append(
                    Condition(id=f"mask:{split.ids[i]}", mask=mask, meta={"source": split.ids[i]})
                )
        if self.options.conditions in ("generated-layouts", "both"):
            conditions.extend(
                self.layout_conditions(
                    [split.masks[i] for i in picks],
                    [split.ids[i] for i in picks],
                    dataset.class_names,
                )
            )
        return conditions

    def layout_conditions(
        self, masks: Sequence[np.ndarray], sources: Sequence[str], class_names: Sequence[str]
    ) -> list[Condition]:
        """New masks from the layout generator, one per described mask (id ``layout:{source}``)."""
        if self.layout is None:
            raise PipelineError(
                "generator 'casdm' has no layout model: it was trained with conditions='training-masks'; set the option "
                "conditions to 'generated-layouts' or 'both' and train again"
            )
        descriptions = [describe_mask(np.asarray(m), class_names) for m in masks]
        keys = [(f"layout:{source}", 0) for source in sources]
        labels = self.layout.sample(
            descriptions,
            keys,
            self.options.seed,
            self.options.layout_sampling_steps,
            self.options.sample_batch_size,
        )
        return [
            Condition(
                id=key, mask=label.long().contiguous(), meta={"source": source, "prompts": prompts}
            )
            for (key, _), label, source, prompts in zip(keys, labels, sources, descriptions)
        ]

    # ------------------------------------------------------------------ sampling

    def predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The image network's output for ``x_t`` under ``cond["labels"]`` (model-resolution masks)."""
        return self.require_model().network(x_t, t, cond["labels"])

    def sample(
        self, conditions: Sequence[Condition], n_per_condition: int, seed: int
    ) -> list[Sample]:
        """``n_per_condition`` images per condition, each from noise seeded by ``(seed, c.id, i)``
        and denoised with DPM-Solver++ on fixed-size chunks (bit-identical however many are
        requested together)."""
        model = self.require_model()
        if n_per_condition < 1 or not conditions:
            return []
        model.network.eval()
        device = self.device
        labels = {c.id: self._label_map(c.mask, f"condition '{c.id}'") for c in conditions}
        items = [(c, i) for c in conditions for i in range(n_per_condition)]
        noise = initial_noise(
            seed, [(c.id, i) for c, i in items], model.latent_shape, device=device
        )
        label_batch = torch.stack([labels[c.id] for c, _ in items])
        scheduler = build_sampling_scheduler(model.noise_scheduler.config, "dpm-solver++")
        chunk = self.options.sample_batch_size

        def run(noise_chunk: torch.Tensor, label_chunk: torch.Tensor) -> torch.Tensor:
            x = denoise(
                self.predict,
                scheduler,
                noise_chunk,
                {"labels": label_chunk},
                self.options.sampling_steps,
            )
            return model.autoencoder.decode(x).clamp(-1.0, 1.0)

        starts = range(0, len(items), chunk)
        parts = [
            map_fixed_batches(run, [noise[s : s + chunk], label_batch[s : s + chunk]], chunk)
            for s in self.context.progress.track(starts, "sample casdm", total=len(starts))
        ]
        images = torch.cat(parts)
        samples = []
        for (c, i), image in zip(items, images):
            assert c.mask is not None
            picture = (
                resize_images(image[None], tuple(c.mask.shape))[0]
                .clamp(-1.0, 1.0)
                .float()
                .cpu()
                .contiguous()
            )
            samples.append(
                Sample(
                    image=picture,
                    condition=c,
                    generator=self.kind,
                    seed=seed,
                    index=i,
                    mask=c.mask.detach().cpu().long(),
                )
            )
        return samples

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the image model and, if trained, the layout model (see :mod:`saadi_casdm.model`)."""
        meta = {
            "class_names": self.class_names,
            "image_size": self.image_size,
            "final_loss": self.history[-1]["loss"] if self.history else None,
        }
        save_model(self.require_model(), Path(path), meta)
        if self.layout is not None:
            self.layout.save(Path(path) / LAYOUT_DIR)

    def load(self, path: Path) -> None:
        model, meta = load_model(Path(path))
        self.model = model.to(self.context.device)
        self.class_names = list(meta.get("class_names", []))
        self.image_size = meta.get("image_size")
        layout_dir = Path(path) / LAYOUT_DIR
        self.layout = (
            LayoutGenerator.load(layout_dir, self.context.device) if layout_dir.is_dir() else None
        )

    # ------------------------------------------------------------------ alignment

    def diffusion_target(self) -> CASDMTarget:
        self.require_model()
        return CASDMTarget(self)


class CASDMTarget:
    """The :class:`~saadi_core.interfaces.DiffusionTarget` view of the image network.

    ``encode`` gives ``x0`` = the sample's image at model resolution on the network's grid
    (pixel-unshuffled) and ``cond = {"labels": (N, R, R) int64}`` — the sample's mask at model
    resolution; ``predict`` runs the network on them. The DPO loss compares plain (unweighted)
    errors, as Diffusion-DPO defines them; the class weighting is part of base training only.
    """

    def __init__(self, generator: CASDMGenerator) -> None:
        self.generator = generator
        self.noise_scheduler: Any = generator.require_model().noise_scheduler

    @torch.no_grad()
    def encode(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        gen = self.generator
        model = gen.require_model()
        images = torch.stack([s.image for s in samples]).to(device=gen.device, dtype=torch.float32)
        x0 = model.autoencoder.encode(resize_images(images, model.resolution)).float()
        labels = torch.stack(
            [
                gen._label_map(
                    s.mask if s.mask is not None else s.condition.mask,
                    f"sample of '{s.condition.id}'",
                )
                for s in samples
            ]
        )
        return x0, {"labels": labels}

    def predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return self.generator.predict(x_t, t, cond)

    def trainable_module(self) -> torch.nn.Module:
        return self.generator.require_model().network

    def lora_target_modules(self) -> list[str]:
        return list(LORA_TARGET_MODULES)
