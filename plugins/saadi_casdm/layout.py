"""CASDM's text-prompted segmentation-map generator: new layouts from per-class prompts.

Using only the training masks as conditions limits what a mask-conditioned generator can add; the
paper's second model draws *new* masks. It is a diffusion model over segmentation maps encoded
as colour images (one colour per class), conditioned on one short prompt per class — its name,
how many pieces, how big and where — each embedded on its own by a CLIP text encoder and the
embeddings concatenated (paper Eq. 11). Generated colour maps are decoded to class ids by the
nearest class colour.

Decisions the paper leaves open:

* **Prompts** are written from the masks themselves (:func:`describe_mask`), for every class in
  class-id order so each one has a fixed place in the concatenation: ``"one cystic duct small
  middle centre"`` or ``"no cystic artery"``; count = connected pieces (one/two/several), size =
  share of the image (tiny < 1 % ≤ small < 5 % ≤ medium < 20 % ≤ large), place = the third of the
  image (top/middle/bottom, left/centre/right) holding the class's centre of mass. A generated
  layout is prompted with a *training* mask's description (the paper: prompts "matched the
  patterns found in the existing training set"), so it is a new mask with that mask's content.
* **Colours** (:func:`class_palette`): the background at the RGB cube's centre, the other classes
  spread over the cube by farthest-point selection on a grid (its corners for up to 9 classes), so
  a blend at an object's border never decodes to a third class.
* **The model** is the toolkit's latent diffusion model (:mod:`saadi_core.diffusion.latent`): a
  ``UNet2DConditionModel`` cross-attending to the concatenated prompt states, which also reach
  every ResNet block attention-pooled into the timestep embedding (diffusers'
  ``addition_embed_type="text"``: which classes are present is a global property of a map, and
  cross-attention alone in the mid block learnt to ignore "no …" prompts in a few CPU minutes), a
  pixel-unshuffle "autoencoder", x0-prediction in ``tiny``. The text encoder is the paper's frozen CLIP when
  ``layout_text_encoder`` names a local one, else the small
  :func:`~saadi_core.diffusion.builders.build_clip_text_encoder` trained jointly (no CLIP weights
  offline). Training masks are also used flipped (with their flipped descriptions), plain MSE
  (the paper's Fig. 3), DPM-Solver++ sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from scipy import ndimage

from saadi_casdm.losses import class_aware_mse, class_weight_map
from saadi_casdm.options import CASDMOptions
from saadi_core.diffusion.builders import (
    encode_prompts,
    make_accelerator,
    quiet_hf_progress,
    resize_masks,
)
from saadi_core.diffusion.latent import (
    LatentDiffusionModel,
    build_from_config,
    load_saved,
    save_model,
)
from saadi_core.diffusion.latent_options import LatentDiffusionOptions, PredictionType
from saadi_core.diffusion.latent_training import LatentTrainingLoop
from saadi_core.diffusion.sampling import (
    build_sampling_scheduler,
    denoise,
    initial_noise,
    map_fixed_batches,
)
from saadi_core.diffusion.targets import training_target
from saadi_core.errors import DataError
from saadi_core.interfaces import ProgressReporter

#: sub-directory and meta-file name of the layout model in a saved casdm generator
LAYOUT_DIR = "layout"

SIZE_WORDS: tuple[tuple[float, str], ...] = (
    (0.01, "tiny"),
    (0.05, "small"),
    (0.2, "medium"),
    (float("inf"), "large"),
)
VERTICAL = ("top", "middle", "bottom")
HORIZONTAL = ("left", "centre", "right")
COUNT_WORDS = ("one", "two", "several")


# --------------------------------------------------------------------------- colours


def class_palette(num_classes: int) -> torch.Tensor:
    """``(K, 3)`` class colours in ``[-1, 1]``: the background (class 0) at the cube's centre, the
    other classes picked farthest-first from a grid over the RGB cube with ``m = max(2,
    ⌈(K−1)^(1/3)⌉)`` levels per axis (the cube's corners for up to 9 classes).

    Why the background in the centre: a generated map blends colours across a boundary, and
    nearest-colour decoding of a blend can land on a *third* class — with the background black
    and a class white, the grey between them is equally near every corner, which painted thin
    rims of a rare class around whole organs. From the centre, the segment to any corner stays
    nearest to its two ends, so the boundaries with the background (every object has them)
    decode cleanly; blends between two touching objects decode at worst to background.
    """
    levels = max(2, int(np.ceil((num_classes - 1) ** (1 / 3) - 1e-9)))
    grid = np.array(list(product(np.linspace(-1.0, 1.0, levels), repeat=3)), dtype=np.float64)
    candidates = np.concatenate([np.zeros((1, 3)), grid[np.abs(grid).sum(axis=1) > 0]])
    chosen = [0]
    nearest = np.linalg.norm(candidates, axis=1)
    total = nearest.copy()
    while len(chosen) < num_classes:
        pick = int(np.argmax(nearest + 1e-6 * total))  # ties: the one farthest from all chosen
        chosen.append(pick)
        distance = np.linalg.norm(candidates - candidates[pick], axis=1)
        nearest, total = np.minimum(nearest, distance), total + distance
    return torch.tensor(candidates[chosen], dtype=torch.float32)


def encode_colours(labels: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Class ids ``(N, H, W)`` -> colour maps ``(N, 3, H, W)``."""
    return palette.to(labels.device)[labels.long()].permute(0, 3, 1, 2).contiguous()


def decode_colours(images: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Colour maps ``(N, 3, H, W)`` -> class ids ``(N, H, W)`` of the nearest class colour."""
    pixels = images.float().permute(0, 2, 3, 1)  # (N, H, W, 3)
    distances = (pixels[..., None, :] - palette.to(images.device)).pow(2).sum(dim=-1)
    return distances.argmin(dim=-1)


# --------------------------------------------------------------------------- prompts


def _spoken(name: str) -> str:
    return name.replace("_", " ")


def describe_mask(mask: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """One prompt per class (class-id order) describing ``mask`` ``(H, W)``: see the module docstring."""
    h, w = mask.shape
    prompts = []
    for k, name in enumerate(class_names):
        region = mask == k
        area = int(region.sum())
        if area == 0:
            prompts.append(f"no {_spoken(name)}")
            continue
        pieces = int(ndimage.label(region)[1])
        count = COUNT_WORDS[min(pieces, 3) - 1]
        share = area / (h * w)
        size = next(word for limit, word in SIZE_WORDS if share < limit)
        ys, xs = np.nonzero(region)
        row = VERTICAL[min(int(3 * ys.mean() / h), 2)]
        column = HORIZONTAL[min(int(3 * xs.mean() / w), 2)]
        prompts.append(f"{count} {_spoken(name)} {size} {row} {column}")
    return prompts


def vocabulary_words(class_names: Sequence[str]) -> list[str]:
    """Every word a description may use, one per entry: passed to the word tokenizer with the
    training prompts so it knows them all, without lengthening its padded sequence (the longest
    text sets it)."""
    words = ["no", *COUNT_WORDS, *(word for _, word in SIZE_WORDS), *VERTICAL, *HORIZONTAL]
    return list(dict.fromkeys(words + [w for n in class_names for w in _spoken(n).split()]))


# --------------------------------------------------------------------------- model


class LayoutModelOptions(LatentDiffusionOptions):
    """The shared latent-diffusion settings of the layout model, filled from ``layout_*`` options."""

    prompt_template: str = "{class}"
    block_out_channels: list[int] = Field(default_factory=lambda: [32, 64])
    unet_attention: list[bool] = Field(default_factory=lambda: [False, False])
    prediction_type: PredictionType | None = "sample"
    max_steps: int = 600
    random_flip: bool = False
    sampling_steps: int = 10
    prompt_dropout: float = 0.0


def layout_options(options: CASDMOptions) -> LayoutModelOptions:
    return LayoutModelOptions(
        seed=options.seed + 1,
        unshuffle_factor=options.layout_unshuffle_factor,
        block_out_channels=options.layout_block_out_channels,
        unet_attention=options.layout_attention,
        text_hidden_size=options.layout_text_hidden_size,
        num_train_timesteps=options.num_train_timesteps,
        max_steps=options.layout_max_steps,
        batch_size=options.layout_batch_size,
        learning_rate=options.layout_learning_rate,
        lr_warmup_steps=options.lr_warmup_steps,
        weight_decay=options.weight_decay,
        grad_clip=options.grad_clip,
        ema_decay=options.ema_decay,
        ema_power=options.ema_power,
        mixed_precision=options.mixed_precision,
        log_every=options.log_every,
        sampling_steps=options.layout_sampling_steps,
        sample_batch_size=options.sample_batch_size,
    )


def _with_pretrained_text_encoder(
    opts: LayoutModelOptions, directory: Path, resolution: int
) -> LatentDiffusionModel:
    """A layout model built from config around a frozen CLIP text encoder and tokenizer loaded from
    ``directory`` (the paper's set-up); the UNet's cross-attention width follows the encoder."""
    from transformers import AutoTokenizer, CLIPTextModel

    root = directory.expanduser().resolve()
    for sub in ("text_encoder", "tokenizer"):
        if not (root / sub).is_dir():
            raise DataError(f"casdm option 'layout_text_encoder': '{sub}/' not found in {root}")
    with quiet_hf_progress():
        text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder")
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    width = int(text_encoder.config.hidden_size)
    heads = next(h for h in (8, 4, 2, 1) if width % h == 0)
    model = build_from_config(
        opts.model_copy(update={"text_hidden_size": width, "text_heads": heads}),
        ["{class}"],
        resolution,
        name="casdm layout",
        text_time_embedding=True,
    )
    model.text_encoder, model.tokenizer = text_encoder.requires_grad_(False).eval(), tokenizer
    model.references["text_encoder"] = str(root / "text_encoder")
    return model


def _flips(masks: np.ndarray) -> np.ndarray:
    """The masks as they are, flipped left-right, upside-down and both: ``(4N, H, W)``."""
    return np.concatenate([masks, masks[:, :, ::-1], masks[:, ::-1, :], masks[:, ::-1, ::-1]])


class LayoutGenerator:
    """A trained layout model with its class colours; samples class-id masks from prompt sets."""

    def __init__(
        self, model: LatentDiffusionModel, class_names: Sequence[str], image_size: int
    ) -> None:
        self.model = model
        self.class_names = list(class_names)
        self.image_size = int(image_size)
        self.palette = class_palette(len(self.class_names))

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        masks: np.ndarray,
        class_names: Sequence[str],
        options: CASDMOptions,
        context_accelerator: Any,
        device: str,
        progress: ProgressReporter,
    ) -> tuple[LayoutGenerator, list[dict[str, float]]]:
        """Train a layout model on ``masks`` ``(N, H, W)`` (and their flips) from config, or
        continue the one saved in ``options.pretrained``. Returns it and the per-step history."""
        opts = layout_options(options)
        masks = _flips(np.ascontiguousarray(masks))
        descriptions = [describe_mask(m, class_names) for m in masks]
        prompts = sorted({p for d in descriptions for p in d})
        saved = Path(options.pretrained) / LAYOUT_DIR if options.pretrained is not None else None
        if saved is not None and saved.is_dir():
            model, _ = load_saved(saved, name=LAYOUT_DIR)
        elif options.layout_text_encoder is not None:
            model = _with_pretrained_text_encoder(
                opts, Path(options.layout_text_encoder), int(masks.shape[-1])
            )
        else:
            model = build_from_config(
                opts,
                [*prompts, *vocabulary_words(class_names)],
                int(masks.shape[-1]),
                name="casdm layout",
                text_time_embedding=True,
            )
        opts = opts.model_copy(
            update={"train_text_encoder": "text_encoder" not in model.references}
        )
        layout = cls(model, class_names, int(masks.shape[-1]))
        accelerator = make_accelerator(
            context_accelerator, device, opts.mixed_precision, who="casdm layout generator"
        )
        history = layout._fit(
            masks,
            descriptions,
            prompts,
            opts,
            accelerator,
            progress,
            options.layout_class_aware_mse,
        )
        return layout, history

    def _fit(
        self,
        masks: np.ndarray,
        descriptions: list[list[str]],
        prompts: list[str],
        opts: LayoutModelOptions,
        accelerator: Any,
        progress: ProgressReporter,
        class_aware: bool,
    ) -> list[dict[str, float]]:
        model = self.model
        loop = LatentTrainingLoop(model, prompts, opts, accelerator, progress, name="casdm-layout")
        device = accelerator.device
        index = {p: i for i, p in enumerate(prompts)}
        table = torch.tensor(
            [[index[p] for p in d] for d in descriptions], dtype=torch.long
        )  # (N, K)
        labels = torch.from_numpy(masks).long()
        scheduler = model.noise_scheduler
        rng = torch.Generator().manual_seed(opts.seed + 1 + accelerator.process_index)
        num_timesteps = int(scheduler.config.num_train_timesteps)
        batch = opts.batch_size
        num_classes = len(self.class_names)
        for _ in loop.steps():
            rows = torch.randint(0, len(labels), (batch,), generator=rng)
            label = resize_masks(labels[rows], model.resolution).to(device)
            colours = encode_colours(label, self.palette)
            x0 = model.autoencoder.encode(colours)
            noise = torch.randn(x0.shape, generator=rng).to(device)
            t = torch.randint(0, num_timesteps, (batch,), generator=rng).to(device)
            states = loop.prompt_states()[table[rows].to(device)]  # (B, K, L, D)
            with accelerator.autocast():
                prediction = loop.unet(
                    scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=states.flatten(1, 2)
                ).sample
            weights = (
                class_weight_map(label, num_classes)
                if class_aware
                else torch.ones(label.shape, device=device)
            )
            loop.update(
                class_aware_mse(prediction, training_target(scheduler, x0, noise, t), weights)
            )
        return loop.finish()

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def prompt_states(self, prompt_sets: Sequence[Sequence[str]]) -> torch.Tensor:
        """Concatenated per-class prompt states ``(N, K·L, D)``; each prompt is encoded on its own."""
        unique = list(dict.fromkeys(p for prompts in prompt_sets for p in prompts))
        table = encode_prompts(self.model.tokenizer, self.model.text_encoder, unique)
        where = {p: i for i, p in enumerate(unique)}
        rows = torch.tensor(
            [[where[p] for p in prompts] for prompts in prompt_sets], device=table.device
        )
        return table[rows].flatten(1, 2)

    @torch.no_grad()
    def sample(
        self,
        prompt_sets: Sequence[Sequence[str]],
        keys: Sequence[tuple[str, int]],
        seed: int,
        steps: int,
        batch_size: int,
    ) -> torch.Tensor:
        """One class-id mask ``(N, image_size, image_size)`` per prompt set; the starting noise of
        row ``j`` comes from ``(seed, *keys[j])``, and the network runs on fixed-size chunks, so a
        layout does not depend on which others are generated with it."""
        model = self.model
        device = next(model.unet.parameters()).device
        model.unet.eval()
        states = self.prompt_states(prompt_sets).to(device)
        noise = initial_noise(seed, keys, model.latent_shape, device=device)
        scheduler = build_sampling_scheduler(model.noise_scheduler.config, "dpm-solver++")

        def predict(
            x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
        ) -> torch.Tensor:
            return model.unet(x, t, encoder_hidden_states=cond["states"]).sample

        def run(noise_chunk: torch.Tensor, state_chunk: torch.Tensor) -> torch.Tensor:
            latents = denoise(predict, scheduler, noise_chunk, {"states": state_chunk}, steps)
            return decode_colours(model.autoencoder.decode(latents).clamp(-1.0, 1.0), self.palette)

        labels = map_fixed_batches(run, [noise, states], batch_size)
        return resize_masks(labels, self.image_size).cpu()

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        meta = {"class_names": self.class_names, "image_size": self.image_size}
        save_model(self.model, Path(path), meta, name=LAYOUT_DIR)

    @classmethod
    def load(cls, path: Path, device: str) -> LayoutGenerator:
        model, meta = load_saved(Path(path), name=LAYOUT_DIR)
        for module in model.modules():
            module.requires_grad_(False).eval()
        return cls(model.to(device), meta["class_names"], meta["image_size"])
