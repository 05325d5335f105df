"""SSI — Surgical Stable Inpaint: a mask-conditioned latent inpainting generator (paper Stage 1).

How a multi-class mask becomes an image (decided here; the paper leaves it open):

* **The known image.** Inpainting needs an image to inpaint *into*. A condition built from a
  training mask carries the real image the mask was drawn from (``Condition.control``; augmented
  copies transform both alike). Its background tissue is kept, and every labelled region is
  regenerated, so the sample's mask is exactly its conditioning mask: background pixels are real
  background, each region is whatever the model paints for its class. This is how SD inpainting
  is used for data synthesis (new organ/tool appearance under real layouts), it spends no compute
  on the large background, and the background cannot contradict the mask. With
  ``regenerate_background`` the background is inpainted too. A condition with a mask only (no
  ``control``) gets a real training image from the model's saved ``background_bank`` (picked by
  the condition id) and always has its background regenerated, since that image's own organs lie
  elsewhere.
* **Region by region, class prompts.** The model's mask channel is binary, and one prompt
  conditions one network call; filling all regions at once under a combined prompt would leave
  the network to guess which blob is which class and where touching regions (duct at the
  gallbladder's neck) meet. So each region present is inpainted in its own pass, in class-id
  order (background first when regenerated), with the prompt "An image of {class} in
  laparoscopic cholecystectomy", keeping everything else — exactly the task of a training view.
  A pass runs a full deterministic sampler trajectory, decodes, and pastes the region's *pixels*
  into the image (pixels outside the region stay exactly as they were, even where they share a
  latent cell with the region); later passes see earlier regions finished. Cost: one trajectory
  per region (~3 per toy-seg mask) of ``sampling_steps`` steps each.
* **Determinism.** Pass ``k`` of sample ``i`` of condition ``c`` starts from noise seeded by
  ``(seed, "c.id#k", i)`` and every network/autoencoder call runs on fixed-size chunks, so every
  sample is a function of ``(seed, c, i)`` only.

The :class:`SSITarget` view for Diffusion-DPO scores a whole sample: ``predict`` runs every region
view of the sample (the region's noisy latent, its mask, the masked sample, its prompt; the rest of
the sample as known context) and composes them as the sampler did (later classes win on shared
latent cells); outside all regions it returns the exact prediction of the known latent, so DPO's
error there is zero for both networks. Each region is thus judged given the rest of the finished
sample — the sampler's own conditional for the last pass, a close proxy for earlier ones.
All network calls go through ``self.model.unet`` — the module :meth:`SSITarget.trainable_module`
returns — so LoRA adapters an aligner attaches there are used by sampling. The model, its saved
layout (``ssi.json``, plus the background bank) and its life cycle are those of every latent
diffusion generator (:mod:`saadi_core.diffusion.latent`,
:mod:`saadi_core.diffusion.latent_generator`) with an inpainting UNet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from saadi_core.diffusion.builders import resize_images, resize_masks
from saadi_core.diffusion.latent import LatentDiffusionModel
from saadi_core.diffusion.latent_generator import LatentDiffusionGenerator, LatentDiffusionTarget
from saadi_core.diffusion.sampling import (
    build_sampling_scheduler,
    denoise,
    initial_noise,
    map_fixed_batches,
    sample_seed,
)
from saadi_core.errors import DataError, PipelineError
from saadi_core.interfaces import Condition, RunContext, Sample
from saadi_ssi.conditions import build_conditions, require_segmentation
from saadi_ssi.inpaint import exact_prediction, inpaint_predict, latent_mask
from saadi_ssi.options import SSIOptions
from saadi_ssi.training import train_model

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.dataset import Dataset

BANK_FILE = "background_bank.npy"


class SSIGenerator(LatentDiffusionGenerator):
    """Mask-conditioned latent inpainting, region by region with class prompts."""

    kind = "ssi"
    name = "ssi"
    inpainting = True

    def __init__(self, options: SSIOptions, context: RunContext | None = None) -> None:
        super().__init__(options, context)
        self.options: SSIOptions = options
        self.background_trained = False
        self.background_bank: np.ndarray | None = None

    # ------------------------------------------------------------------ conditions / prompts

    def prompt(self, class_name: str) -> str:
        """Class names are written with spaces ("cystic_duct" -> "cystic duct")."""
        return super().prompt(class_name.replace("_", " "))

    def conditions(self, dataset: Dataset) -> list[Condition]:
        return build_conditions(dataset, self.options)

    # ------------------------------------------------------------------ training

    def _check_dataset(self, dataset: Dataset) -> None:
        require_segmentation(dataset)

    def _train(
        self, model: LatentDiffusionModel, dataset: Dataset, prompts: list[str], accelerator: Any
    ) -> list[dict[str, float]]:
        assert dataset.train.masks is not None
        return train_model(
            model,
            dataset.train.images,
            dataset.train.masks,
            prompts,
            self.options,
            accelerator,
            self.context.progress,
        )

    def fit(self, dataset: Dataset) -> None:
        """Train (see :meth:`LatentDiffusionGenerator.fit`) and keep a bank of real training
        images, the known images of conditions that have a mask only."""
        super().fit(dataset)
        self.background_trained = self.options.background_view_share > 0
        n = len(dataset.train)
        picks = np.unique(
            np.linspace(0, n - 1, min(self.options.background_bank, n)).round().astype(int)
        )
        self.background_bank = np.ascontiguousarray(dataset.train.images[picks])

    # ------------------------------------------------------------------ helpers

    def class_states(self) -> torch.Tensor:
        """Prompt states of every class, ``(K, L, D)``."""
        return self.embed_prompts([self.prompt(name) for name in self.class_names])

    def regenerates_background(self, condition: Condition) -> bool:
        return condition.control is None or self.options.regenerate_background

    def passes(self, condition: Condition, label: torch.Tensor) -> list[int]:
        """Class ids inpainted for ``condition`` (label map ``label`` at model resolution), in order."""
        first = 0 if self.regenerates_background(condition) else 1
        present = torch.bincount(label.flatten(), minlength=len(self.class_names))
        return [k for k in range(first, len(self.class_names)) if present[k] > 0]

    def _label_map(self, mask: torch.Tensor | None, where: str) -> torch.Tensor:
        if mask is None:
            raise PipelineError(
                f"generator 'ssi' inpaints the regions of a mask, but {where} has no mask"
            )
        if mask.dim() != 2 or mask.is_floating_point():
            raise PipelineError(
                f"ssi: the mask of {where} must be an integer (H, W) class map, got {mask.dtype} {tuple(mask.shape)}"
            )
        if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) >= len(self.class_names)):
            raise PipelineError(
                f"ssi: the mask of {where} holds class ids outside [0, {len(self.class_names)})"
            )
        return resize_masks(mask[None].long().to(self.device), self.require_model().resolution)[0]

    def _known_image(self, condition: Condition) -> torch.Tensor:
        """The image a condition is inpainted into: its own (``control``) or one from the bank."""
        if condition.control is not None:
            return condition.control.float()
        if not self.background_trained:
            raise PipelineError(
                f"ssi: condition '{condition.id}' has a mask but no known image (Condition.control), and the model was "
                "trained without background views (background_view_share=0), so it cannot paint a background"
            )
        if self.background_bank is None or not len(self.background_bank):
            raise PipelineError(
                "ssi: the model has no background bank; fit() or load() a generator first"
            )
        pick = sample_seed(0, condition.id, 0) % len(self.background_bank)
        return (
            torch.from_numpy(self.background_bank[pick])
            .permute(2, 0, 1)
            .float()
            .div(127.5)
            .sub(1.0)
        )

    def _view_predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        model = self.require_model()
        return inpaint_predict(
            model.unet,
            model.noise_scheduler,
            x_t,
            t,
            cond["mask"],
            cond["masked_latent"],
            cond["context"],
            cond["encoder_hidden_states"],
        )

    # ------------------------------------------------------------------ sampling

    def sample(
        self, conditions: Sequence[Condition], n_per_condition: int, seed: int
    ) -> list[Sample]:
        """``n_per_condition`` images per condition; each region pass of sample ``i`` of condition
        ``c`` starts from noise seeded by ``(seed, c.id + '#' + class id, i)`` and runs on
        fixed-size chunks, so samples are bit-identical however many are requested together."""
        model = self.require_model()
        if n_per_condition < 1 or not conditions:
            return []
        device = self.device
        model.unet.eval()
        labels: dict[str, torch.Tensor] = {}
        known: dict[str, torch.Tensor] = {}
        passes: dict[str, list[int]] = {}
        for c in conditions:
            labels[c.id] = self._label_map(c.mask, f"condition '{c.id}'")
            known[c.id] = resize_images(self._known_image(c)[None].to(device), model.resolution)
            passes[c.id] = self.passes(c, labels[c.id])
        items = [(c, i) for c in conditions for i in range(n_per_condition)]
        canvas = torch.cat([known[c.id] for c, _ in items])  # pixel space: known pixels stay exact
        states = self.class_states()
        empty = self.embed_prompts([""]) if self.options.guidance_scale != 1.0 else None
        scheduler = build_sampling_scheduler(model.noise_scheduler.config, self.options.sampler)
        chunk = self.options.sample_batch_size

        tasks = []
        for k in sorted({k for ks in passes.values() for k in ks}):
            jobs = [j for j, (c, _) in enumerate(items) if k in passes[c.id]]
            tasks.extend((k, jobs[start : start + chunk]) for start in range(0, len(jobs), chunk))
        for k, jobs in self.context.progress.track(tasks, "sample ssi", total=len(tasks)):
            keys = [(f"{items[j][0].id}#{k}", items[j][1]) for j in jobs]
            noise = initial_noise(seed, keys, model.latent_shape, device=device)
            regions = torch.stack([labels[items[j][0].id] == k for j in jobs]).float()[:, None]
            index = torch.tensor(jobs, device=device)
            updated = map_fixed_batches(
                lambda *xs, k=k: self._inpaint_pass(scheduler, states[k : k + 1], empty, *xs),
                [noise, canvas[index], regions],
                chunk,
            )
            canvas = canvas.index_copy(0, index, updated)

        samples = []
        for j, (c, i) in enumerate(items):
            assert c.mask is not None
            image = (
                resize_images(canvas[j : j + 1], tuple(c.mask.shape))[0]
                .clamp(-1.0, 1.0)
                .cpu()
                .contiguous()
            )
            region_names = [self.class_names[k] for k in passes[c.id]]
            background = "generated" if self.regenerates_background(c) else "known image"
            samples.append(
                Sample(
                    image=image,
                    condition=c,
                    generator=self.kind,
                    seed=seed,
                    index=i,
                    mask=c.mask.detach().cpu().long(),
                    meta={"regions": region_names, "background": background},
                )
            )
        return samples

    @torch.no_grad()
    def _inpaint_pass(
        self,
        scheduler: Any,
        states: torch.Tensor,
        empty: torch.Tensor | None,
        noise: torch.Tensor,
        canvas: torch.Tensor,
        region: torch.Tensor,
    ) -> torch.Tensor:
        """One region pass over a chunk: encode the pixel ``canvas`` (the known image) and its
        masked copy, denoise the region's latent from ``noise``, decode, and paste the region's
        pixels into the canvas (pixels outside the region stay exactly as they were)."""
        autoencoder = self.require_model().autoencoder
        mask = latent_mask(region, autoencoder.factor)
        context = autoencoder.encode(canvas).float()
        n = noise.shape[0]
        cond = {
            "mask": mask,
            "masked_latent": autoencoder.encode(canvas * (1.0 - region)).float(),
            "context": context,
            "encoder_hidden_states": states.expand(n, *states.shape[1:]),
        }
        uncond = {**cond, "encoder_hidden_states": empty} if empty is not None else None
        x = denoise(
            self._view_predict,
            scheduler,
            noise,
            cond,
            self.options.sampling_steps,
            self.options.guidance_scale,
            uncond,
        )
        generated = autoencoder.decode(x * mask + context * (1.0 - mask)).float()
        return generated * region + canvas * (1.0 - region)

    # ------------------------------------------------------------------ persistence

    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "background_trained": self.background_trained}

    def save(self, path: Path) -> None:
        """Write the shared layout (see :meth:`LatentDiffusionGenerator.save`) and the background bank."""
        super().save(path)
        assert self.background_bank is not None
        np.save(Path(path) / BANK_FILE, self.background_bank)

    def _restore(self, model: LatentDiffusionModel, meta: dict[str, Any], path: Path) -> None:
        bank_file = path / BANK_FILE
        if not bank_file.is_file():
            raise DataError(f"saved ssi generator {path} lacks {BANK_FILE}")
        super()._restore(model, meta, path)
        self.background_trained = bool(meta.get("background_trained", False))
        self.background_bank = np.load(bank_file)

    # ------------------------------------------------------------------ alignment

    def diffusion_target(self) -> SSITarget:
        self.require_model()
        return SSITarget(self)


class SSITarget(LatentDiffusionTarget):
    """The :class:`~saadi_core.interfaces.DiffusionTarget` view of an SSI generator.

    ``encode`` gives ``x0`` = the sample's latent and a conditioning of ``K`` = number of classes
    region views per sample (inactive views are zero and flagged off in ``views``):

    * ``views`` ``(N, K)`` bool — the regions the sampler generated for this sample;
    * ``view_masks`` ``(N, K, 1, h, w)`` — each region on the latent grid;
    * ``masked_latents`` ``(N, K, C, h, w)`` — the sample with that region blanked, encoded;
    * ``encoder_hidden_states`` ``(N, K, L, D)`` — each class's prompt states;
    * ``context`` ``(N, C, h, w)`` — the sample's latent, the known part of every view.

    ``predict`` composes the views as described in :mod:`saadi_ssi.generator`.
    """

    generator: SSIGenerator

    @torch.no_grad()
    def encode(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        gen = self.generator
        model = gen.require_model()
        device = gen.device
        n_classes = len(gen.class_names)
        images = torch.stack([s.image for s in samples]).to(device=device, dtype=torch.float32)
        images = resize_images(images, model.resolution)
        labels = torch.stack(
            [
                gen._label_map(
                    s.mask if s.mask is not None else s.condition.mask,
                    f"sample of '{s.condition.id}'",
                )
                for s in samples
            ]
        )
        views = torch.zeros((len(samples), n_classes), dtype=torch.bool, device=device)
        for row, (s, label) in enumerate(zip(samples, labels)):
            views[row, gen.passes(s.condition, label)] = True
        chunk = gen.options.sample_batch_size
        x0 = torch.cat(
            [model.autoencoder.encode(images[i : i + chunk]) for i in range(0, len(images), chunk)]
        ).float()
        factor = model.autoencoder.factor
        view_masks, masked = [], []
        for k in range(n_classes):
            region = (labels == k).float()[:, None] * views[:, k, None, None, None]
            view_masks.append(latent_mask(region, factor))
            masked.append(
                torch.cat(
                    [
                        model.autoencoder.encode(
                            images[i : i + chunk] * (1.0 - region[i : i + chunk])
                        )
                        for i in range(0, len(images), chunk)
                    ]
                ).float()
                * views[:, k, None, None, None]
            )
        states = gen.class_states()
        cond = {
            "views": views,
            "view_masks": torch.stack(view_masks, dim=1),
            "masked_latents": torch.stack(masked, dim=1),
            "encoder_hidden_states": states[None].expand(len(samples), *states.shape).contiguous(),
            "context": x0.clone(),
        }
        return x0, cond

    def predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        model = self.generator.require_model()
        context = cond["context"]
        result = exact_prediction(self.noise_scheduler, x_t, context, t)
        rows, classes = cond["views"].nonzero(as_tuple=True)
        if rows.numel() == 0:
            return result
        masks = cond["view_masks"][rows, classes]
        out = inpaint_predict(
            model.unet,
            self.noise_scheduler,
            x_t[rows],
            t[rows],
            masks,
            cond["masked_latents"][rows, classes],
            context[rows],
            cond["encoder_hidden_states"][rows, classes],
        )
        for k in classes.unique(
            sorted=True
        ):  # ascending class order: later passes win on shared cells
            sel = classes == k
            r, m = rows[sel], masks[sel]
            result = result.index_copy(0, r, m * out[sel] + (1.0 - m) * result[r])
        return result
