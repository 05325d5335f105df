"""SimuScope — simulator frames made realistic by Stable Diffusion + style LoRA + ControlNet.

After the SimuScope abstract (*Realistic Endoscopic Synthetic Dataset Generation Through Surgical
Simulation and Diffusion Models*; ``docs/method.md``): a simulator frame, whose
label is exact, is turned into a realistic frame by text-guided img2img with a Stable Diffusion
UNet that carries a style LoRA learnt from a few real frames and is steered by a ControlNet that
sees the simulator frame (or its edges or label map). The output keeps the simulator's label.

What the generator decides (the abstract leaves it open; ``docs/generators/simuscope.md``):

* **Prompt.** ``prompt_template`` with ``{class}`` = the classes the frame's label shows
  ("… showing gallbladder, cystic duct and tool"): the text guides realism *and* content, and
  classifier-free guidance contrasts it with the empty prompt. The tiny model's word-level
  vocabulary is written from every class name and the longest such prompt.
* **img2img.** The frame's latent is noised to ``strength`` of the sampler's schedule and
  denoised from there with the ControlNet's residuals and guidance on every step
  (:mod:`saadi_simuscope.img2img`); sample ``i`` of condition ``c`` starts from noise seeded by
  ``(seed, c.id, i)`` and every network call runs on fixed-size chunks, so samples depend only
  on ``(seed, c, i)``.
* **Training** (:mod:`saadi_simuscope.training`): a control stage, then the style LoRA fused into
  the UNet.

:class:`SimuScopeTarget` is the view Diffusion-DPO aligns: ``x0`` = the sample's latent, ``cond``
= its prompt states and control image; ``predict`` is the same :class:`ControlledUNet` forward
sampling uses, and ``trainable_module`` is the UNet, the ControlNet or both (option
``dpo_network``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from saadi_core.diffusion.builders import (
    make_accelerator,
    quiet_hf_progress,
    resize_images,
    resize_masks,
)
from saadi_core.diffusion.latent import LatentDiffusionModel, build_from_config, load_pretrained
from saadi_core.diffusion.latent_generator import LatentDiffusionGenerator, LatentDiffusionTarget
from saadi_core.diffusion.sampling import (
    build_sampling_scheduler,
    denoise,
    initial_noise,
    map_fixed_batches,
)
from saadi_core.errors import ConfigError, DataError, PipelineError
from saadi_core.interfaces import Condition, RunContext, Sample
from saadi_simuscope.conditions import (
    build_conditions,
    require_segmentation,
    select_indices,
    simulator_frames,
)
from saadi_simuscope.control import control_image
from saadi_simuscope.img2img import StrengthSchedule
from saadi_simuscope.network import ControlledUNet, build_controlnet, load_controlnet
from saadi_simuscope.options import SimuScopeOptions
from saadi_simuscope.simulator import render
from saadi_simuscope.training import TrainingPairs, train_control, train_style

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.dataset import Dataset

CONTROLNET_DIR = "controlnet"


class SimuScopeGenerator(LatentDiffusionGenerator):
    """Text-guided img2img from simulator frames through a UNet + ControlNet."""

    kind = "simuscope"
    name = "simuscope"

    def __init__(self, options: SimuScopeOptions, context: RunContext | None = None) -> None:
        super().__init__(options, context)
        self.options: SimuScopeOptions = options
        self.network: ControlledUNet | None = None
        #: where a frozen pretrained ControlNet was loaded from (saved by reference), else None
        self.controlnet_reference: str | None = None

    # ------------------------------------------------------------------ prompts / conditions

    def prompt(self, class_name: str) -> str:
        """Class names are written with spaces ("cystic_duct" -> "cystic duct")."""
        return super().prompt(class_name.replace("_", " "))

    def scene_prompt(self, class_ids: Sequence[int]) -> str:
        """The prompt of a frame whose label shows ``class_ids``: its foreground classes listed
        ("gallbladder, cystic duct and tool"), or the background's name if it shows nothing else."""
        names = [self.class_names[k] for k in sorted(set(class_ids)) if k != 0] or [
            self.class_names[0]
        ]
        return self.prompt(
            names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        )

    def label_prompt(self, label: torch.Tensor | np.ndarray) -> str:
        return self.scene_prompt([int(k) for k in np.unique(np.asarray(label))])

    def conditions(self, dataset: Dataset) -> list[Condition]:
        return build_conditions(dataset, self.options)

    # ------------------------------------------------------------------ training

    def _check_dataset(self, dataset: Dataset) -> None:
        """Segmentation data, and a readable simulator folder, before any training starts."""
        require_segmentation(dataset)
        if self.options.simulator_dir is not None:
            simulator_frames(dataset, self.options)

    def fit(self, dataset: Dataset) -> None:
        """Load or build the model, then the control stage and the style stage."""
        self._check_dataset(dataset)
        self.class_names = list(dataset.class_names)
        self.image_size = dataset.image_size
        foreground = range(1, dataset.num_classes)
        # every word a scene prompt can use, and the longest one (the tokenizer's length)
        vocabulary = [self.scene_prompt([k]) for k in range(dataset.num_classes)] + [
            self.scene_prompt(list(foreground))
        ]
        accelerator = make_accelerator(
            self.context.accelerator,
            self.context.device,
            self.options.mixed_precision,
            who="generator 'simuscope'",
        )
        if self.options.pretrained is not None:
            model = load_pretrained(self.options, self.options.resolution, name=self.name)
        else:
            model = build_from_config(
                self.options,
                vocabulary,
                self.options.resolution or dataset.image_size,
                name=self.name,
            )
        self.history = self._train(model, dataset, vocabulary, accelerator)
        self.model = model

    def _train(
        self, model: LatentDiffusionModel, dataset: Dataset, prompts: list[str], accelerator: Any
    ) -> list[dict[str, float]]:
        """Control stage on all training pairs, style stage on ``n_style_frames`` of them."""
        opts = self.options
        factor = model.autoencoder.factor
        if opts.controlnet is not None:
            controlnet = load_controlnet(opts.controlnet, model.unet, factor)
            self.controlnet_reference = (
                str(Path(opts.controlnet).expanduser().resolve()) if opts.max_steps == 0 else None
            )
        else:
            controlnet = build_controlnet(
                model.unet, factor, opts.control_embedding_channels, opts.seed
            )
            self.controlnet_reference = None
        masks = np.asarray(dataset.train.masks)
        scene_prompts = [self.label_prompt(m) for m in masks]
        prompts = list(dict.fromkeys([*prompts, *scene_prompts]))
        rows = np.array([prompts.index(p) for p in scene_prompts], dtype=np.int64)
        history: list[dict[str, float]] = []
        if opts.max_steps > 0:
            pairs = TrainingPairs(
                dataset.train.images, render(masks, dataset.num_classes), masks, rows
            )
            train_unet = opts.pretrained is None
            history += [
                {**h, "stage": "control"}
                for h in train_control(
                    model,
                    controlnet,
                    pairs,
                    prompts,
                    dataset.num_classes,
                    train_unet,
                    opts,
                    accelerator,
                    self.context.progress,
                )
            ]
        if opts.style_steps > 0:
            style = select_indices(len(dataset.train), opts.n_style_frames, opts.seed + 1)
            history += [
                {**h, "stage": "style"}
                for h in train_style(
                    model,
                    dataset.train.images[style],
                    rows[style],
                    prompts,
                    opts,
                    accelerator,
                    self.context.progress,
                )
            ]
        controlnet.requires_grad_(False).eval()
        self.network = ControlledUNet(model.unet, controlnet)
        return history

    # ------------------------------------------------------------------ model access

    def require_network(self) -> ControlledUNet:
        self.require_model()
        assert self.network is not None
        return self.network

    def _predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return self.require_network()(
            x_t, t, cond["encoder_hidden_states"], cond["control"], self.options.control_scale
        )

    def _label(self, condition: Condition) -> torch.Tensor:
        mask = condition.mask
        if mask is None:
            raise PipelineError(
                f"simuscope: condition '{condition.id}' has no simulator label (Condition.mask)"
            )
        if mask.dim() != 2 or mask.is_floating_point():
            raise PipelineError(
                f"simuscope: the label of '{condition.id}' must be an integer (H, W) map, got {mask.dtype} {tuple(mask.shape)}"
            )
        if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) >= len(self.class_names)):
            raise PipelineError(
                f"simuscope: the label of '{condition.id}' holds class ids outside [0, {len(self.class_names)})"
            )
        return mask.long()

    def _frame(self, condition: Condition, label: torch.Tensor) -> torch.Tensor:
        """The condition's simulator frame ``(3, H, W)``; a label without one is rendered by the toy simulator."""
        if condition.control is not None:
            return condition.control.float()
        frame = render(label[None].cpu().numpy(), len(self.class_names))[0]
        return torch.from_numpy(frame).permute(2, 0, 1).float().div(127.5).sub(1.0)

    def control_inputs(
        self, conditions: Sequence[Condition]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per condition: its simulator frame's latent, its control image (``(N, 3, R, R)`` in
        ``[0, 1]``) and its prompt states. Each condition is processed on its own, so what it gets
        does not depend on which other conditions are in the call."""
        model = self.require_model()
        resolution, kind, k = model.resolution, self.options.control_input, len(self.class_names)
        latents, controls = [], []
        for c in conditions:
            label = self._label(c)
            frame = resize_images(self._frame(c, label)[None].to(self.device), resolution)
            controls.append(
                control_image(kind, frame, resize_masks(label[None].to(self.device), resolution), k)
            )
            with torch.no_grad():
                latents.append(model.autoencoder.encode(frame).float())
        states = self.embed_prompts([self.label_prompt(self._label(c)) for c in conditions])
        return torch.cat(latents), torch.cat(controls), states

    # ------------------------------------------------------------------ sampling

    def sample(
        self, conditions: Sequence[Condition], n_per_condition: int, seed: int
    ) -> list[Sample]:
        """``n_per_condition`` realistic versions of each simulator frame (see the module docstring)."""
        model = self.require_model()
        if n_per_condition < 1 or not conditions:
            return []
        network = self.require_network()
        network.eval()
        latents, controls, states = self.control_inputs(conditions)
        items = [(k, c, i) for k, c in enumerate(conditions) for i in range(n_per_condition)]
        rows = torch.tensor([k for k, _, _ in items], device=self.device)
        noise = initial_noise(
            seed, [(c.id, i) for _, c, i in items], model.latent_shape, device=self.device
        )
        empty = self.embed_prompts([""]) if self.options.guidance_scale != 1.0 else None
        schedule = StrengthSchedule(
            build_sampling_scheduler(model.noise_scheduler.config, self.options.sampler),
            self.options.strength,
        )
        steps = self.options.sampling_steps
        chunk = self.options.sample_batch_size

        def run(
            noise_chunk: torch.Tensor,
            latent_chunk: torch.Tensor,
            state_chunk: torch.Tensor,
            control_chunk: torch.Tensor,
        ) -> torch.Tensor:
            cond = {"encoder_hidden_states": state_chunk, "control": control_chunk}
            uncond = (
                {"encoder_hidden_states": empty, "control": control_chunk}
                if empty is not None
                else None
            )
            start = schedule.start(latent_chunk, noise_chunk, steps)
            x = denoise(
                self._predict, schedule, start, cond, steps, self.options.guidance_scale, uncond
            )
            with torch.no_grad():
                return model.autoencoder.decode(x).float()

        starts = range(0, len(items), chunk)
        decoded = []
        for start in self.context.progress.track(starts, "sample simuscope", total=len(starts)):
            index = rows[start : start + chunk]
            inputs = [noise[start : start + chunk], latents[index], states[index], controls[index]]
            decoded.append(map_fixed_batches(run, inputs, chunk))
        images = torch.cat(decoded)
        samples = []
        for j, (_, c, i) in enumerate(items):
            label = self._label(c)
            image = (
                resize_images(images[j : j + 1], tuple(label.shape))[0]
                .clamp(-1.0, 1.0)
                .cpu()
                .contiguous()
            )
            samples.append(
                Sample(
                    image=image,
                    condition=c,
                    generator=self.kind,
                    seed=seed,
                    index=i,
                    mask=label.cpu().clone(),
                )
            )
        return samples

    # ------------------------------------------------------------------ persistence

    def _meta(self) -> dict[str, Any]:
        return {
            **super()._meta(),
            "control_input": self.options.control_input,
            "controlnet_reference": self.controlnet_reference,
        }

    def save(self, path: Path) -> None:
        """The shared latent-diffusion layout plus ``controlnet/`` (or, for a frozen pretrained
        ControlNet, a reference to its directory). Base weights only: adapters belong to the aligner."""
        network = self.require_network()
        if any(isinstance(m, BaseTunerLayer) for m in network.modules()):
            raise PipelineError(
                "simuscope.save writes base weights only; the network carries LoRA adapters (the aligner saves its own)"
            )
        super().save(path)
        if self.controlnet_reference is None:
            with quiet_hf_progress():
                network.controlnet.save_pretrained(Path(path) / CONTROLNET_DIR)

    def _restore(self, model: LatentDiffusionModel, meta: dict[str, Any], path: Path) -> None:
        saved_input = meta.get("control_input")
        if saved_input != self.options.control_input:
            raise ConfigError(
                f"the saved simuscope generator {path} was trained with control_input='{saved_input}', "
                f"but the options say '{self.options.control_input}'"
            )
        reference = meta.get("controlnet_reference")
        directory = Path(reference) if reference else path / CONTROLNET_DIR
        if not (directory / "config.json").is_file():
            raise DataError(
                f"the saved simuscope generator {path} lacks its ControlNet ({directory})"
            )
        from diffusers import ControlNetModel

        with quiet_hf_progress():
            controlnet = ControlNetModel.from_pretrained(directory)
        super()._restore(model, meta, path)
        self.controlnet_reference = reference
        self.network = ControlledUNet(
            self.model.unet, controlnet.requires_grad_(False).eval().to(self.context.device)
        )  # type: ignore[union-attr]

    # ------------------------------------------------------------------ alignment

    def diffusion_target(self) -> SimuScopeTarget:
        self.require_network()
        return SimuScopeTarget(self)


class SimuScopeTarget(LatentDiffusionTarget):
    """The :class:`~saadi_core.interfaces.DiffusionTarget` view of a SimuScope generator.

    ``encode`` gives ``x0`` = the sample's latent and ``cond`` = ``encoder_hidden_states`` (the
    scene prompt of its label) and ``control`` (the control image of its simulator frame), both
    deterministic; ``predict`` is the sampler's own :class:`ControlledUNet` forward.
    """

    generator: SimuScopeGenerator

    def trainable_module(self) -> torch.nn.Module:
        """The UNet, the ControlNet, or the :class:`ControlledUNet` holding both (``dpo_network``);
        every prediction passes through each of them."""
        network = self.generator.require_network()
        choice = self.generator.options.dpo_network
        return {"unet": network.unet, "controlnet": network.controlnet, "both": network}[choice]

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
        _, control, states = gen.control_inputs([s.condition for s in samples])
        return x0, {"encoder_hidden_states": states, "control": control}

    def predict(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return self.generator._predict(x_t, t, cond)
