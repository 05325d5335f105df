"""The model of a latent diffusion generator and where it comes from, shared by SSD and SSI.

A generator of this family is one :class:`LatentDiffusionModel` — a diffusers
``UNet2DConditionModel``, a CLIP text encoder and its tokenizer, an autoencoder and the training
``DDPMScheduler`` — from one of three sources:

* :func:`build_from_config` — the ``tiny`` profile: a small UNet, a pixel-unshuffle autoencoder, a
  word-level tokenizer written from the class prompts and a small CLIPTextModel, all
  random-initialised from the ``seed`` option;
* :func:`load_pretrained` — the ``paper`` profile: a local diffusers Stable Diffusion directory
  (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``);
* :func:`load_saved` — what :func:`save_model` wrote after training.

Text-to-image and inpainting models differ only in the denoiser's channels
(:func:`unet_channels`): an inpainting UNet also reads the region mask and the masked-image
latent. Every function takes the generator's ``name``, which prefixes its messages and names the
meta file of the saved layout (``save_model``)::

    {name}.json     format, resolution, references, and the generator's meta (class names,
                    prompts, output image size, …)
    unet/           the sampling weights (the EMA average when EMA is on) - diffusers format
    text_encoder/   transformers format (omitted when frozen and loaded from a pretrained dir)
    tokenizer/      transformers format
    scheduler/      the training DDPMScheduler config (prediction_type, betas)
    autoencoder/    pixel-unshuffle config, or an AutoencoderKL (omitted when it is the frozen
                    pretrained VAE)

Frozen parts that came from a pretrained directory are *referenced* by absolute path in the meta
file instead of copied (SD's VAE and text encoder are ~0.8 GB and never change); the trained
UNet is always written. A generator may add files of its own next to these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from saadi_core.diffusion.builders import (
    KLAutoencoder,
    PixelUnshuffleAutoencoder,
    build_clip_text_encoder,
    build_cond_unet,
    build_noise_scheduler,
    build_word_tokenizer,
    load_autoencoder,
    quiet_hf_progress,
)
from saadi_core.diffusion.latent_options import LatentDiffusionOptions
from saadi_core.diffusion.saved import load_parts, read_record, write_record
from saadi_core.errors import ConfigError, DataError

FORMAT = 1
SD_SUBFOLDERS = ("unet", "text_encoder", "tokenizer", "scheduler")


@dataclass
class LatentDiffusionModel:
    """Everything sampling and training need. ``references`` maps a part name (``text_encoder``,
    ``autoencoder``) to the directory it was loaded from when that part is frozen pretrained."""

    unet: Any
    text_encoder: Any
    tokenizer: Any
    autoencoder: PixelUnshuffleAutoencoder | KLAutoencoder
    noise_scheduler: Any
    resolution: int
    references: dict[str, str] = field(default_factory=dict)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.resolution // self.autoencoder.factor
        return (self.autoencoder.latent_channels, size, size)

    def modules(self) -> list[nn.Module]:
        return [self.unet, self.text_encoder, self.autoencoder]

    def to(self, device: str | torch.device) -> LatentDiffusionModel:
        for module in self.modules():
            module.to(device)
        return self


def unet_channels(latent_channels: int, inpainting: bool) -> tuple[int, int]:
    """The denoiser's ``(input, output)`` channels for ``C``-channel latents: ``C -> C`` for
    text-to-image; ``2C + 1 -> C`` for Stable Diffusion inpainting, whose input is the noisy
    latent ‖ region mask ‖ masked-image latent."""
    return (2 * latent_channels + 1 if inpainting else latent_channels), latent_channels


def _family(inpainting: bool) -> str:
    return "Stable Diffusion inpainting" if inpainting else "Stable Diffusion"


def _check_resolution(resolution: int, factor: int, levels: int, name: str) -> None:
    multiple = factor * 2 ** (levels - 1)
    if resolution % multiple:
        raise ConfigError(
            f"{name} option 'resolution' ({resolution}) must be a multiple of {multiple} "
            f"(autoencoder factor {factor} x UNet downsampling {2 ** (levels - 1)})"
        )


def _check_unet_channels(
    unet: Any, latent_channels: int, inpainting: bool, name: str, where: str
) -> None:
    want_in, want_out = unet_channels(latent_channels, inpainting)
    have_in, have_out = int(unet.config.in_channels), int(unet.config.out_channels)
    if (have_in, have_out) == (want_in, want_out):
        return
    if inpainting:
        need = (
            f"inpainting with {latent_channels}-channel latents needs {want_in} / {want_out} (noisy latent, mask, "
            "masked-image latent); is it an inpainting checkpoint, and does option 'autoencoder' match it?"
        )
    else:
        need = f"{latent_channels}-channel latents need {want_in} / {want_out} (check option 'autoencoder')"
    raise ConfigError(
        f"{name}: {where} has a UNet with {have_in} input / {have_out} output channels, but {need}"
    )


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} not found: {path}")
    return path


def _load_kl(path: Path, name: str) -> KLAutoencoder:
    _require_dir(
        path, f"AutoencoderKL directory ({name} option 'autoencoder_path' / pretrained vae/)"
    )
    with quiet_hf_progress():
        return KLAutoencoder.from_pretrained(path)


def build_from_config(
    options: LatentDiffusionOptions,
    prompts: list[str],
    resolution: int,
    *,
    name: str,
    inpainting: bool = False,
    text_time_embedding: bool = False,
    tokenizer: Any | None = None,
) -> LatentDiffusionModel:
    """A random-initialised model (seeded by ``options.seed``, without touching the global RNG).

    The tokenizer's vocabulary is written from ``prompts`` and the empty prompt unless a
    ``tokenizer`` is given (the embedded weights bring their own vocabulary);
    ``text_time_embedding`` also feeds the pooled text states to the UNet's timestep embedding
    (see :func:`~saadi_core.diffusion.builders.build_cond_unet`).
    """
    if options.autoencoder != "pixel-unshuffle" and options.autoencoder_path is None:
        raise ConfigError(
            f"{name} option autoencoder='kl' needs weights: set 'pretrained' (a local {_family(inpainting)} directory) "
            "or 'autoencoder_path'; the tiny profile uses autoencoder='pixel-unshuffle'"
        )
    if options.prediction_type is None:
        raise ConfigError(
            f"{name} option 'prediction_type' must be set when the model is built from config (no 'pretrained')"
        )
    autoencoder = (
        PixelUnshuffleAutoencoder(options.unshuffle_factor)
        if options.autoencoder == "pixel-unshuffle"
        else _load_kl(options.autoencoder_path, name)  # type: ignore[arg-type]
    )
    _check_resolution(resolution, autoencoder.factor, len(options.block_out_channels), name)
    tokenizer = tokenizer if tokenizer is not None else build_word_tokenizer([*prompts, ""])
    in_channels, out_channels = unet_channels(autoencoder.latent_channels, inpainting)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        text_encoder = build_clip_text_encoder(
            tokenizer, options.text_hidden_size, options.text_layers, options.text_heads
        )
        unet = build_cond_unet(
            sample_size=resolution // autoencoder.factor,
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=options.block_out_channels,
            attention_levels=options.unet_attention,
            layers_per_block=options.layers_per_block,
            cross_attention_dim=options.text_hidden_size,
            attention_head_dim=options.attention_head_dim,
            norm_num_groups=options.norm_num_groups,
            text_time_embedding=text_time_embedding,
            text_time_heads=options.text_heads,
        )
    scheduler = build_noise_scheduler(
        num_train_timesteps=options.num_train_timesteps,
        beta_schedule=options.beta_schedule,
        prediction_type=options.prediction_type,
        # latents in the image range can be clipped like pixels; VAE latents cannot
        clip_sample=isinstance(autoencoder, PixelUnshuffleAutoencoder)
        and autoencoder.scaling_factor == 1.0,
    )
    references = (
        {"autoencoder": str(options.autoencoder_path.resolve())} if options.autoencoder_path else {}
    )
    return LatentDiffusionModel(
        unet, text_encoder, tokenizer, autoencoder, scheduler, resolution, references
    )


def load_pretrained(
    options: LatentDiffusionOptions, resolution: int | None, *, name: str, inpainting: bool = False
) -> LatentDiffusionModel:
    """Load the local diffusers Stable Diffusion (``inpainting``: SD inpainting) directory named
    by ``options.pretrained``.

    The UNet is fine-tuned; the text encoder and VAE are frozen and only referenced when saved.
    ``resolution`` ``None`` means the model's native size (UNet sample size x VAE factor).
    """
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    assert options.pretrained is not None
    root = _require_dir(
        Path(options.pretrained).expanduser().resolve(), f"{name} option 'pretrained': directory"
    )
    for sub in SD_SUBFOLDERS:
        _require_dir(
            root / sub, f"{name} option 'pretrained': {_family(inpainting)} sub-folder '{sub}/'"
        )
    with quiet_hf_progress():
        unet = UNet2DConditionModel.from_pretrained(root / "unet")
        text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder")
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
        scheduler = DDPMScheduler.from_pretrained(root / "scheduler")
    if (
        options.prediction_type is not None
        and options.prediction_type != scheduler.config.prediction_type
    ):
        scheduler = DDPMScheduler.from_config(
            scheduler.config, prediction_type=options.prediction_type
        )
    references = {"text_encoder": str(root / "text_encoder")}
    if options.autoencoder == "kl":
        vae_dir = (
            Path(options.autoencoder_path).expanduser().resolve()
            if options.autoencoder_path
            else root / "vae"
        )
        autoencoder: PixelUnshuffleAutoencoder | KLAutoencoder = _load_kl(vae_dir, name)
        references["autoencoder"] = str(vae_dir)
    else:
        autoencoder = PixelUnshuffleAutoencoder(options.unshuffle_factor)
    _check_unet_channels(
        unet, autoencoder.latent_channels, inpainting, name, f"pretrained directory {root}"
    )
    if int(text_encoder.config.hidden_size) != int(unet.config.cross_attention_dim):
        raise ConfigError(
            f"{name} option 'pretrained': text encoder width does not match the UNet's cross_attention_dim in {root}"
        )
    size = resolution or int(unet.config.sample_size) * autoencoder.factor
    _check_resolution(size, autoencoder.factor, len(unet.config.block_out_channels), name)
    return LatentDiffusionModel(
        unet, text_encoder, tokenizer, autoencoder, scheduler, size, references
    )


def _meta_file(name: str) -> str:
    return f"{name}.json"


def save_model(model: LatentDiffusionModel, path: Path, meta: dict[str, Any], *, name: str) -> None:
    """Write ``model`` (and the generator's ``meta``: class names, prompts, image size) to ``path``.

    The UNet must be the plain base model: adapters belong to the aligner, which saves them itself.
    """
    if getattr(model.unet, "peft_config", None):
        raise RuntimeError(
            f"{name}.save writes base weights only; remove adapters first (the aligner saves its own)"
        )
    path.mkdir(parents=True, exist_ok=True)
    with quiet_hf_progress():
        model.unet.save_pretrained(path / "unet")
        model.tokenizer.save_pretrained(path / "tokenizer")
        model.noise_scheduler.save_pretrained(path / "scheduler")
        if "text_encoder" not in model.references:
            model.text_encoder.save_pretrained(path / "text_encoder")
        if "autoencoder" not in model.references:
            model.autoencoder.save_pretrained(path / "autoencoder")
    write_record(
        path,
        _meta_file(name),
        {"format": FORMAT, "resolution": model.resolution, "references": model.references, **meta},
    )


def load_saved(path: Path, *, name: str) -> tuple[LatentDiffusionModel, dict[str, Any]]:
    """Restore what :func:`save_model` wrote; returns the model and the generator's meta."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    record = read_record(
        path, _meta_file(name), FORMAT, name, parts=("unet", "tokenizer", "scheduler")
    )
    references: dict[str, str] = record.pop("references")
    text_dir = Path(references.get("text_encoder", path / "text_encoder"))
    ae_dir = Path(references.get("autoencoder", path / "autoencoder"))
    for where in (text_dir, ae_dir):
        _require_dir(where, f"component of the saved {name} generator {path}")
    parts = load_parts(
        path, {"unet": UNet2DConditionModel, "tokenizer": AutoTokenizer, "scheduler": DDPMScheduler}
    )
    with quiet_hf_progress():
        text_encoder = CLIPTextModel.from_pretrained(text_dir)
    model = LatentDiffusionModel(
        unet=parts["unet"],
        text_encoder=text_encoder,
        tokenizer=parts["tokenizer"],
        autoencoder=load_autoencoder(ae_dir),
        noise_scheduler=parts["scheduler"],
        resolution=int(record.pop("resolution")),
        references=references,
    )
    record.pop("format")
    return model, record
