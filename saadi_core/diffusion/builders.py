"""Building blocks every diffusers-based generator of the toolkit shares.

The ``tiny`` profile builds its models from config and trains them on a 2-core CPU, while the
``paper`` profile loads Stable Diffusion parts from a local directory. Both go through the same
few objects so a generator plugin (SSD, SSI, SimGen, CASDM, …) only assembles them:

* :func:`build_cond_unet` — a small ``UNet2DConditionModel`` (the Stable Diffusion denoiser
  architecture) from a handful of numbers;
* autoencoders with one surface (``encode``/``decode``/``factor``/``latent_channels``):
  :class:`PixelUnshuffleAutoencoder`, a lossless, parameter-free space-to-depth "autoencoder"
  that keeps the latent-diffusion structure at CPU cost, and :class:`KLAutoencoder` around a
  diffusers ``AutoencoderKL`` (SD's VAE); :func:`load_autoencoder` restores either;
* an offline text side: :func:`build_word_tokenizer` (word-level vocabulary written from the
  prompts themselves) and :func:`build_clip_text_encoder` (a small ``CLIPTextModel``);
  :func:`encode_prompts` runs any tokenizer/encoder pair the way Stable Diffusion does;
* :func:`build_noise_scheduler` (the training ``DDPMScheduler``), :class:`ModuleEMA` (weight
  averaging) and :func:`make_accelerator` (HF ``accelerate`` set-up for one or many processes);
* :func:`resize_images` / :func:`resize_masks` — bringing data to a model's resolution and
  samples back to the dataset's size.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from saadi_core.errors import ConfigError

#: special tokens of the word-level tokenizer; the CLIP names, so prompts look the same to a
#: CLIPTextModel whichever tokenizer produced them
PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN = "<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"

PIXEL_UNSHUFFLE_CONFIG = "pixel_unshuffle.json"


# --------------------------------------------------------------------------- denoiser


def build_cond_unet(
    *,
    sample_size: int,
    in_channels: int,
    out_channels: int | None = None,
    block_out_channels: Sequence[int] = (64, 128),
    attention_levels: Sequence[bool] = (False, True),
    layers_per_block: int = 1,
    cross_attention_dim: int = 64,
    attention_head_dim: int = 32,
    norm_num_groups: int = 32,
    text_time_embedding: bool = False,
    text_time_heads: int = 4,
) -> Any:
    """A text-conditioned ``UNet2DConditionModel`` with cross-attention only where asked.

    ``attention_levels[i]`` says whether resolution level ``i`` (0 = full latent size) uses
    cross-attention blocks; self-attention on large grids dominates the cost on a CPU, so small
    models put attention on the coarser levels only. The mid block always attends (it is the
    coarsest level). ``text_time_embedding`` adds diffusers' ``addition_embed_type="text"``: the
    text states, attention-pooled, are added to the timestep embedding and so reach every ResNet
    block — a global conditioning path next to cross-attention that a small model trained for a
    few minutes picks up much faster (still driven only by ``encoder_hidden_states``). Parameters
    are initialised from torch's global RNG: seed it (or use
    ``torch.random.fork_rng``) before calling for reproducible weights.
    """
    from diffusers import UNet2DConditionModel

    if len(block_out_channels) != len(attention_levels):
        raise ValueError("block_out_channels and attention_levels must have the same length")
    if any(c % norm_num_groups for c in block_out_channels):
        raise ValueError(
            f"every block channel count must be divisible by norm_num_groups={norm_num_groups}"
        )
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels))
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels or in_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups,
        addition_embed_type="text" if text_time_embedding else None,
        addition_embed_type_num_heads=text_time_heads,
    )


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- autoencoders


class PixelUnshuffleAutoencoder(nn.Module):
    """Space-to-depth as a fixed, lossless "autoencoder": ``(3, H, W) -> (3·f², H/f, W/f)``.

    A VAE trained on a CPU for a few minutes is blurry and makes each diffusion step ~4× dearer;
    pixel-unshuffle keeps the latent-diffusion layout (the UNet works on an ``f``-times smaller
    grid with more channels) at no training cost and decodes exactly. ``scaling_factor`` plays
    the role of SD's latent scale; 1.0 keeps latents in the image range ``[-1, 1]``.
    """

    def __init__(self, factor: int = 4, scaling_factor: float = 1.0) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError("pixel-unshuffle factor must be >= 1")
        self.factor = int(factor)
        self.scaling_factor = float(scaling_factor)

    @property
    def latent_channels(self) -> int:
        return 3 * self.factor**2

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` in ``[-1, 1]`` -> latents ``(N, 3f², H/f, W/f)``."""
        return F.pixel_unshuffle(images, self.factor) * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latents / self.scaling_factor, self.factor)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "kind": "pixel-unshuffle",
            "factor": self.factor,
            "scaling_factor": self.scaling_factor,
        }
        (directory / PIXEL_UNSHUFFLE_CONFIG).write_text(json.dumps(config, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> PixelUnshuffleAutoencoder:
        config = json.loads((Path(directory) / PIXEL_UNSHUFFLE_CONFIG).read_text())
        return cls(factor=config["factor"], scaling_factor=config["scaling_factor"])


class KLAutoencoder(nn.Module):
    """A diffusers ``AutoencoderKL`` (Stable Diffusion's VAE) behind the same surface.

    ``encode`` uses the posterior *mode* rather than a sample, so encoding is deterministic:
    Diffusion-DPO encodes winners and losers once and caches them, and a training step must see
    the same latent the aligner later sees.
    """

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    @property
    def factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def _shift(self) -> float:
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        latents = self.vae.encode(images.to(dtype)).latent_dist.mode()
        return ((latents - self._shift()) * self.scaling_factor).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        return self.vae.decode(
            (latents / self.scaling_factor + self._shift()).to(dtype)
        ).sample.float()

    def save_pretrained(self, directory: str | Path) -> None:
        self.vae.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> KLAutoencoder:
        from diffusers import AutoencoderKL

        return cls(AutoencoderKL.from_pretrained(directory))


def load_autoencoder(directory: str | Path) -> PixelUnshuffleAutoencoder | KLAutoencoder:
    """Restore whichever autoencoder ``save_pretrained`` wrote into ``directory``."""
    if (Path(directory) / PIXEL_UNSHUFFLE_CONFIG).exists():
        return PixelUnshuffleAutoencoder.from_pretrained(directory)
    return KLAutoencoder.from_pretrained(directory)


# --------------------------------------------------------------------------- resolution


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_images(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of ``(N, C, H, W)`` to ``size`` (an int means square; no-op
    when equal)."""
    hw = _hw(size)
    if tuple(images.shape[-2:]) == hw:
        return images
    return F.interpolate(images, size=hw, mode="bilinear", antialias=True, align_corners=False)


def resize_masks(masks: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of class-id masks ``(N, H, W)`` to ``size`` (no-op when equal):
    interpolating class ids would invent classes along region borders."""
    hw = _hw(size)
    if tuple(masks.shape[-2:]) == hw:
        return masks
    return F.interpolate(masks[:, None].float(), size=hw, mode="nearest")[:, 0].long()


def random_flips(rng: torch.Generator, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """The same random horizontal, then vertical flips applied to every tensor of a batch (images
    ``(N, C, H, W)``, masks ``(N, H, W)``: the last two dims), so an image and its mask or
    simulator frame stay aligned. Two ``torch.rand(N)`` draws from ``rng``, in that order."""
    out = list(tensors)
    for dim in (-1, -2):
        flip = torch.rand(out[0].shape[0], generator=rng) < 0.5
        out = [torch.where(flip.view(-1, *[1] * (t.dim() - 1)), t.flip(dim), t) for t in out]
    return out


# --------------------------------------------------------------------------- text side


def build_word_tokenizer(texts: Iterable[str], max_length: int | None = None) -> Any:
    """A word-level tokenizer whose vocabulary is every (lower-cased) word of ``texts``.

    Why word-level: the tiny profile conditions on a closed set of prompts (one per class), so
    what matters is that each class name gets its own token and that the vocabulary is written
    here, offline. A BPE tokenizer such as CLIP's would need a merges table we would have to
    invent or train and would split rare organ names into sub-words shared across classes.
    Unknown words map to ``<unk>``; every text is wrapped in CLIP's start/end tokens, so the
    empty prompt (the unconditional input of classifier-free guidance) is not all padding.
    ``model_max_length`` defaults to the longest text plus the two special tokens. The result
    is a ``PreTrainedTokenizerFast`` and round-trips through ``save_pretrained`` /
    ``AutoTokenizer.from_pretrained``.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Whitespace()
    specials = [PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN]
    words: list[str] = []
    longest = 0
    for text in texts:
        pieces = [w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))]
        longest = max(longest, len(pieces))
        words.extend(w for w in pieces if w not in words and w not in specials)
    vocab = {token: i for i, token in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN]), (EOS_TOKEN, vocab[EOS_TOKEN])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        model_max_length=max_length or longest + 2,
    )


def build_clip_text_encoder(
    tokenizer: Any, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4
) -> Any:
    """A small ``CLIPTextModel`` sized to ``tokenizer`` (vocabulary, sequence length, special
    token ids); its ``last_hidden_state`` is the UNet's ``encoder_hidden_states`` as in SD.
    Initialised from torch's global RNG."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        projection_dim=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        max_position_embeddings=tokenizer.model_max_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return CLIPTextModel(config)


def tokenize_prompts(tokenizer: Any, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids ``(N, L)`` padded/truncated to the tokenizer's ``model_max_length`` (SD's
    convention: the text encoder always sees full-length sequences)."""
    return tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def encode_prompts(tokenizer: Any, text_encoder: Any, prompts: Sequence[str]) -> torch.Tensor:
    """``encoder_hidden_states`` ``(N, L, D)`` float32 for ``prompts`` (gradients flow if the
    caller enables them).

    Each prompt is encoded on its own: kernels give slightly different results for different
    batch sizes, and a sample's conditioning must not depend on which other prompts were asked
    for in the same call (see :mod:`saadi_core.diffusion.sampling`). Prompts are few and short.
    """
    device = next(text_encoder.parameters()).device
    ids = tokenize_prompts(tokenizer, prompts).to(device)
    return torch.cat([text_encoder(row[None])[0].float() for row in ids])


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Silence transformers'/diffusers' own tqdm bars ("Loading weights", "Writing model
    shards") while loading or saving, restoring the previous setting afterwards: plugins report
    progress only through the run's reporter."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    modules = (transformers_logging, diffusers_logging)
    previous = [m.is_progress_bar_enabled() for m in modules]
    for m in modules:
        m.disable_progress_bar()
    try:
        yield
    finally:
        for m, enabled in zip(modules, previous):
            if enabled:
                m.enable_progress_bar()


# --------------------------------------------------------------------------- schedulers, EMA


def build_noise_scheduler(
    *,
    num_train_timesteps: int = 1000,
    beta_schedule: str = "squaredcos_cap_v2",
    prediction_type: str = "v_prediction",
    clip_sample: bool = False,
) -> Any:
    """The training ``DDPMScheduler`` (forward process, ``add_noise``, ``get_velocity``).

    ``scaled_linear`` uses Stable Diffusion's betas (0.00085 → 0.012); ``squaredcos_cap_v2`` is
    the cosine schedule that suits pixel-like latents. ``clip_sample`` is stored in the config
    and makes samplers built from it clip the predicted ``x0`` to ``[-1, 1]`` — right when the
    latents live in the image range (pixel-unshuffle with scale 1), wrong for VAE latents.
    """
    from diffusers import DDPMScheduler

    extra: dict[str, Any] = {}
    if beta_schedule == "scaled_linear":
        extra = {"beta_start": 0.00085, "beta_end": 0.012}
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        clip_sample=clip_sample,
        **extra,
    )


class ModuleEMA:
    """Exponential moving average of the trainable weights of some modules (diffusers'
    ``EMAModel``), with warm-up so short CPU runs are not dominated by the random init.

    The decay at optimisation step ``k`` is ``min(decay, 1 - (1 + k)^-power)``. Call
    :meth:`copy_to` at the end of training to put the averaged weights *into* the modules, so
    there is one set of sampling weights (and adapters attached later see the averaged ones).
    """

    def __init__(
        self, modules: Sequence[nn.Module], decay: float = 0.999, power: float = 0.75
    ) -> None:
        from diffusers.training_utils import EMAModel

        self.parameters = [p for m in modules for p in m.parameters() if p.requires_grad]
        self.ema = EMAModel(self.parameters, decay=decay, use_ema_warmup=True, power=power)

    def step(self) -> None:
        self.ema.step(self.parameters)

    def copy_to(self) -> None:
        self.ema.copy_to(self.parameters)


# --------------------------------------------------------------------------- accelerate


def resolve_mixed_precision(option: str, device: str) -> str:
    """``auto`` -> ``bf16`` on a CUDA device that supports it, else ``no`` (bf16 rather than
    fp16: no loss scaling and no fp16 NaNs; trainable weights stay fp32 either way)."""
    if option != "auto":
        return option
    if (
        str(device).startswith("cuda")
        and torch.cuda.is_available()
        and torch.cuda.is_bf16_supported()
    ):
        return "bf16"
    return "no"


def make_accelerator(
    existing: Any | None, device: str, mixed_precision: str = "auto", who: str = "this component"
) -> Any:
    """The run's ``accelerate.Accelerator`` if one was launched (``RunContext.accelerator``),
    else a single-process one on ``device``. Training code written against it runs unchanged
    under ``accelerate launch`` with several processes. ``who`` names the component in the error
    raised when its precision conflicts with the process's."""
    if existing is not None:
        return existing
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    precision = resolve_mixed_precision(mixed_precision, device)
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != precision:
        # accelerate keeps one precision per process and would raise a ValueError that names
        # neither the option nor the fix
        raise ConfigError(
            f"{who}: options.mixed_precision '{precision}' conflicts with '{AcceleratorState().mixed_precision}' already "
            "used in this process (accelerate allows one per process); give every component the same mixed_precision"
        )
    return Accelerator(cpu=str(device) == "cpu", mixed_precision=precision)
