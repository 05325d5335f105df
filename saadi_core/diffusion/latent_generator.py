"""What every latent diffusion generator of the toolkit does the same way (SSD, SSI, …).

:class:`LatentDiffusionGenerator` owns the :class:`~saadi_core.diffusion.latent.LatentDiffusionModel`
and its life cycle — ``fit`` (new model from config or a pretrained directory, then the
generator's own training), ``save``/``load`` of the shared layout, class prompts, prompt states.
A generator adds its conditions, its dataset check, its training loop and its sampler.

:class:`LatentDiffusionTarget` is the common part of their
:class:`~saadi_core.interfaces.DiffusionTarget` views: the scheduler, the trainable module (the
generator's own UNet, so adapters an aligner attaches there are used by sampling) and the LoRA
target modules.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from saadi_core.diffusion.builders import encode_prompts, make_accelerator
from saadi_core.diffusion.embedded import load_embedded
from saadi_core.diffusion.latent import (
    LatentDiffusionModel,
    build_from_config,
    load_pretrained,
    load_saved,
    save_model,
)
from saadi_core.diffusion.latent_options import LatentDiffusionOptions
from saadi_core.errors import PipelineError
from saadi_core.integrity import file_sha256
from saadi_core.interfaces import Generator, RunContext

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.dataset import Dataset

#: the attention projections of the UNet's transformer blocks, where Diffusion-DPO's LoRA goes
LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


class LatentDiffusionGenerator(Generator):
    """Base of the latent diffusion generators: model life cycle, class prompts, prompt states.

    Subclasses set :attr:`name` (fixed, unlike ``kind``, which the registry may set to another
    registered name: it prefixes messages, names the saved meta file ``{name}.json`` and the
    training progress events) and :attr:`inpainting` (whether the UNet is an SD inpainting one),
    and implement ``conditions``, ``sample``, :meth:`_check_dataset` and :meth:`_train`.
    """

    name: ClassVar[str]
    inpainting: ClassVar[bool] = False

    def __init__(self, options: LatentDiffusionOptions, context: RunContext | None = None) -> None:
        super().__init__(options, context)
        self.options: LatentDiffusionOptions = options
        self.model: LatentDiffusionModel | None = None
        self.class_names: list[str] = []
        self.image_size: int | None = None
        self.history: list[dict[str, float]] = []

    def prompt(self, class_name: str) -> str:
        return self.options.prompt_template.format(**{"class": class_name})

    # ------------------------------------------------------------------ training

    @abstractmethod
    def _check_dataset(self, dataset: Dataset) -> None:
        """Raise a clear error for a dataset this generator cannot train on (before any work)."""

    @abstractmethod
    def _train(
        self, model: LatentDiffusionModel, dataset: Dataset, prompts: list[str], accelerator: Any
    ) -> list[dict[str, float]]:
        """Train ``model`` in place on ``dataset.train``; ``prompts[k]`` is class ``k``'s prompt.
        Returns the per-step history."""

    @property
    def _text_time_embedding(self) -> bool:
        """Whether a model built from config adds pooled text states to the timestep embedding."""
        return False

    def embedded_weights(self) -> Path:
        """The file ``pretrained: embedded`` loads: ``weights/{name}-tiny.safetensors`` next to
        the generator's module (shipped as package data; see :mod:`saadi_core.diffusion.embedded`)."""
        return (
            Path(inspect.getfile(type(self))).parent / "weights" / f"{self.name}-tiny.safetensors"
        )

    def cache_inputs(self) -> dict[str, str]:
        """The embedded weights' SHA-256 when the run starts from them: a re-pretrained file
        must retrain the generator, not reuse a model fine-tuned from the old one."""
        if self.options.pretrained != "embedded":
            return {}
        path = self.embedded_weights()
        # a missing file is reported by fit, with the one-line error that names it
        return {"embedded_weights": file_sha256(path) if path.is_file() else "missing"}

    def fit(self, dataset: Dataset) -> None:
        self._check_dataset(dataset)
        prompts = [self.prompt(name) for name in dataset.class_names]
        accelerator = make_accelerator(
            self.context.accelerator,
            self.context.device,
            self.options.mixed_precision,
            who=f"generator '{self.name}'",
        )
        if self.options.pretrained == "embedded":
            model = load_embedded(
                self.embedded_weights(),
                self.options,
                prompts,
                self.options.resolution or dataset.image_size,
                name=self.name,
                inpainting=self.inpainting,
                text_time_embedding=self._text_time_embedding,
            )
        elif self.options.pretrained is not None:
            model = load_pretrained(
                self.options, self.options.resolution, name=self.name, inpainting=self.inpainting
            )
        else:
            model = build_from_config(
                self.options,
                prompts,
                self.options.resolution or dataset.image_size,
                name=self.name,
                inpainting=self.inpainting,
                text_time_embedding=self._text_time_embedding,
            )
        self.history = self._train(model, dataset, prompts, accelerator)
        self.model = model
        self.class_names = list(dataset.class_names)
        self.image_size = dataset.image_size

    # ------------------------------------------------------------------ model access

    def require_model(self) -> LatentDiffusionModel:
        if self.model is None:
            raise PipelineError(
                f"generator '{self.name}' has no weights yet: call fit() or load() first"
            )
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.require_model().unet.parameters()).device

    @torch.no_grad()
    def embed_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text-encoder states ``(N, L, D)`` for ``prompts`` (each unique prompt encoded once)."""
        model = self.require_model()
        unique = list(dict.fromkeys(prompts))
        table = encode_prompts(model.tokenizer, model.text_encoder, unique)
        index = torch.tensor([unique.index(p) for p in prompts], device=table.device)
        return table[index]

    # ------------------------------------------------------------------ persistence

    def _meta(self) -> dict[str, Any]:
        """What the saved meta file records besides the model: class names, prompts, image size."""
        return {
            "class_names": self.class_names,
            "prompts": [self.prompt(n) for n in self.class_names],
            "image_size": self.image_size,
        }

    def save(self, path: Path) -> None:
        """Write the base model (UNet sampling weights, text encoder, tokenizer, autoencoder,
        scheduler config) and :meth:`_meta`; see :mod:`saadi_core.diffusion.latent`."""
        save_model(self.require_model(), Path(path), self._meta(), name=self.name)

    def load(self, path: Path) -> None:
        model, meta = load_saved(Path(path), name=self.name)
        self._restore(model, meta, Path(path))

    def _restore(self, model: LatentDiffusionModel, meta: dict[str, Any], path: Path) -> None:
        """Adopt a loaded ``model`` and its ``meta`` (frozen, on the run's device)."""
        for module in model.modules():
            module.requires_grad_(False).eval()
        self.model = model.to(self.context.device)
        self.class_names = list(meta.get("class_names", []))
        self.image_size = meta.get("image_size")


class LatentDiffusionTarget:
    """The shared part of a latent diffusion generator's DiffusionTarget view; subclasses add
    ``encode`` and ``predict`` (routing every forward through :meth:`trainable_module`)."""

    def __init__(self, generator: LatentDiffusionGenerator) -> None:
        self.generator = generator
        self.noise_scheduler: Any = generator.require_model().noise_scheduler

    def trainable_module(self) -> torch.nn.Module:
        return self.generator.require_model().unet

    def lora_target_modules(self) -> list[str]:
        return list(LORA_TARGET_MODULES)

    @torch.no_grad()
    def unconditional(self, cond: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``cond`` with every prompt replaced by the empty one: the input of classifier-free
        guidance's unconditional branch (masks and other entries kept), for aligners that train
        that branch too (``condition_dropout``)."""
        states = cond["encoder_hidden_states"]
        empty = self.generator.embed_prompts([""]).to(states)
        return {**cond, "encoder_hidden_states": empty.expand_as(states)}
