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
returns — so LoRA adapters an aligner attaches there are used by sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from saadi_core.diffusion.builders import encode_prompts, make_accelerator
from saadi_core.diffusion.sampling import build_sampling_scheduler, denoise, initial_noise, map_fixed_batches, sample_seed
from saadi_core.errors import DataError, PipelineError
from saadi_core.interfaces import Condition, Generator, RunContext, Sample
from saadi_ssi.components import SSIModel, build_from_config, load_pretrained, load_saved, save_model
from saadi_ssi.conditions import build_conditions, require_segmentation
from saadi_ssi.inpaint import exact_prediction, inpaint_predict, latent_mask
from saadi_ssi.options import SSIOptions
from saadi_ssi.training import resize_images, resize_masks, train_model

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.dataset import Dataset

LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
BANK_FILE = "background_bank.npy"


class SSIGenerator(Generator):
    """Mask-conditioned latent inpainting, region by region with class prompts."""

    kind = "ssi"

    def __init__(self, options: SSIOptions, context: RunContext | None = None) -> None:
        super().__init__(options, context)
        self.options: SSIOptions = options
        self.model: SSIModel | None = None
        self.class_names: list[str] = []
        self.image_size: int | None = None
        self.background_trained = False
        self.background_bank: np.ndarray | None = None
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ conditions / prompts

    def prompt(self, class_name: str) -> str:
        return self.options.prompt_template.format(**{"class": class_name.replace("_", " ")})

    def conditions(self, dataset: Dataset) -> list[Condition]:
        return build_conditions(dataset, self.options)

    # ------------------------------------------------------------------ training

    def fit(self, dataset: Dataset) -> None:
        require_segmentation(dataset)
        prompts = [self.prompt(name) for name in dataset.class_names]
        accelerator = make_accelerator(self.context.accelerator, self.context.device, self.options.mixed_precision)
        if self.options.pretrained is not None:
            model = load_pretrained(self.options, self.options.resolution)
        else:
            model = build_from_config(self.options, prompts, self.options.resolution or dataset.image_size)
        assert dataset.train.masks is not None
        self.history = train_model(
            model, dataset.train.images, dataset.train.masks, prompts, self.options, accelerator, self.context.progress
        )
        self.model = model
        self.class_names = list(dataset.class_names)
        self.image_size = dataset.image_size
        self.background_trained = self.options.background_view_share > 0
        n = len(dataset.train)
        picks = np.unique(np.linspace(0, n - 1, min(self.options.background_bank, n)).round().astype(int))
        self.background_bank = np.ascontiguousarray(dataset.train.images[picks])

    # ------------------------------------------------------------------ helpers

    def _require_model(self) -> SSIModel:
        if self.model is None:
            raise PipelineError("generator 'ssi' has no weights yet: call fit() or load() first")
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self._require_model().unet.parameters()).device

    @torch.no_grad()
    def embed_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text-encoder states ``(N, L, D)`` for ``prompts`` (each unique prompt encoded once)."""
        model = self._require_model()
        unique = list(dict.fromkeys(prompts))
        table = encode_prompts(model.tokenizer, model.text_encoder, unique)
        index = torch.tensor([unique.index(p) for p in prompts], device=table.device)
        return table[index]

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
            raise PipelineError(f"generator 'ssi' inpaints the regions of a mask, but {where} has no mask")
        if mask.dim() != 2 or mask.is_floating_point():
            raise PipelineError(f"ssi: the mask of {where} must be an integer (H, W) class map, got {mask.dtype} {tuple(mask.shape)}")
        if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) >= len(self.class_names)):
            raise PipelineError(f"ssi: the mask of {where} holds class ids outside [0, {len(self.class_names)})")
        return resize_masks(mask[None].long().to(self.device), self._require_model().resolution)[0]

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
            raise PipelineError("ssi: the model has no background bank; fit() or load() a generator first")
        pick = sample_seed(0, condition.id, 0) % len(self.background_bank)
        return torch.from_numpy(self.background_bank[pick]).permute(2, 0, 1).float().div(127.5).sub(1.0)

    def _view_predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        model = self._require_model()
        return inpaint_predict(
            model.unet, model.noise_scheduler, x_t, t, cond["mask"], cond["masked_latent"], cond["context"],
            cond["encoder_hidden_states"],
        )

    # ------------------------------------------------------------------ sampling

    def sample(self, conditions: Sequence[Condition], n_per_condition: int, seed: int) -> list[Sample]:
        """``n_per_condition`` images per condition; each region pass of sample ``i`` of condition
        ``c`` starts from noise seeded by ``(seed, c.id + '#' + class id, i)`` and runs on
        fixed-size chunks, so samples are bit-identical however many are requested together."""
        model = self._require_model()
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
                lambda *xs, k=k: self._inpaint_pass(scheduler, states[k : k + 1], empty, *xs), [noise, canvas[index], regions], chunk
            )
            canvas = canvas.index_copy(0, index, updated)

        samples = []
        for j, (c, i) in enumerate(items):
            assert c.mask is not None
            image = resize_images(canvas[j : j + 1], tuple(c.mask.shape))[0].clamp(-1.0, 1.0).cpu().contiguous()
            region_names = [self.class_names[k] for k in passes[c.id]]
            background = "generated" if self.regenerates_background(c) else "known image"
            samples.append(
                Sample(
                    image=image, condition=c, generator=self.kind, seed=seed, index=i, mask=c.mask.detach().cpu().long(),
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
        autoencoder = self._require_model().autoencoder
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
        x = denoise(self._view_predict, scheduler, noise, cond, self.options.sampling_steps, self.options.guidance_scale, uncond)
        generated = autoencoder.decode(x * mask + context * (1.0 - mask)).float()
        return generated * region + canvas * (1.0 - region)

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the base model (UNet sampling weights, text encoder, tokenizer, autoencoder,
        scheduler config), the class prompts and the background bank; see
        :mod:`saadi_ssi.components`."""
        model = self._require_model()
        meta = {
            "class_names": self.class_names,
            "prompts": [self.prompt(n) for n in self.class_names],
            "image_size": self.image_size,
            "background_trained": self.background_trained,
        }
        save_model(model, Path(path), meta)
        assert self.background_bank is not None
        np.save(Path(path) / BANK_FILE, self.background_bank)

    def load(self, path: Path) -> None:
        model, meta = load_saved(Path(path))
        bank_file = Path(path) / BANK_FILE
        if not bank_file.is_file():
            raise DataError(f"saved ssi generator {path} lacks {BANK_FILE}")
        for module in model.modules():
            module.requires_grad_(False).eval()
        self.model = model.to(self.context.device)
        self.class_names = list(meta.get("class_names", []))
        self.image_size = meta.get("image_size")
        self.background_trained = bool(meta.get("background_trained", False))
        self.background_bank = np.load(bank_file)

    # ------------------------------------------------------------------ alignment

    def diffusion_target(self) -> SSITarget:
        self._require_model()
        return SSITarget(self)


class SSITarget:
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

    def __init__(self, generator: SSIGenerator) -> None:
        self.generator = generator
        self.noise_scheduler: Any = generator._require_model().noise_scheduler

    @torch.no_grad()
    def encode(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        gen = self.generator
        model = gen._require_model()
        device = gen.device
        n_classes = len(gen.class_names)
        images = torch.stack([s.image for s in samples]).to(device=device, dtype=torch.float32)
        images = resize_images(images, model.resolution)
        labels = torch.stack(
            [gen._label_map(s.mask if s.mask is not None else s.condition.mask, f"sample of '{s.condition.id}'") for s in samples]
        )
        views = torch.zeros((len(samples), n_classes), dtype=torch.bool, device=device)
        for row, (s, label) in enumerate(zip(samples, labels)):
            views[row, gen.passes(s.condition, label)] = True
        chunk = gen.options.sample_batch_size
        x0 = torch.cat([model.autoencoder.encode(images[i : i + chunk]) for i in range(0, len(images), chunk)]).float()
        factor = model.autoencoder.factor
        view_masks, masked = [], []
        for k in range(n_classes):
            region = (labels == k).float()[:, None] * views[:, k, None, None, None]
            view_masks.append(latent_mask(region, factor))
            masked.append(
                torch.cat(
                    [model.autoencoder.encode(images[i : i + chunk] * (1.0 - region[i : i + chunk])) for i in range(0, len(images), chunk)]
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

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        model = self.generator._require_model()
        context = cond["context"]
        result = exact_prediction(self.noise_scheduler, x_t, context, t)
        rows, classes = cond["views"].nonzero(as_tuple=True)
        if rows.numel() == 0:
            return result
        masks = cond["view_masks"][rows, classes]
        out = inpaint_predict(
            model.unet, self.noise_scheduler, x_t[rows], t[rows], masks, cond["masked_latents"][rows, classes],
            context[rows], cond["encoder_hidden_states"][rows, classes],
        )
        for k in classes.unique(sorted=True):  # ascending class order: later passes win on shared cells
            sel = classes == k
            r, m = rows[sel], masks[sel]
            result = result.index_copy(0, r, m * out[sel] + (1.0 - m) * result[r])
        return result

    def trainable_module(self) -> torch.nn.Module:
        return self.generator._require_model().unet

    def lora_target_modules(self) -> list[str]:
        return list(LORA_TARGET_MODULES)
