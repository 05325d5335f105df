"""Embedded pretrained weights of the tiny latent diffusion generators (``pretrained: embedded``).

The paper fine-tunes Stable Diffusion — a model pretrained on web-scale data — on a few hundred
surgical images. The tiny profile does the same in miniature: ``benchmarks/pretrain.py`` trains
each generator's tiny architecture on the toy pretraining corpus (:mod:`saadi_core.data.corpus`),
and :func:`export_weights` writes the result to one safetensors file that ships inside the
generator's plugin package. A run with ``pretrained: embedded`` starts from that file
(:func:`load_embedded`) and fine-tunes on its own small train split.

What one file holds: every tensor of the UNet (``unet.*``) and of the CLIP text encoder
(``text_encoder.*``), and as string metadata the UNet and text-encoder configs, the
architecture options the model was built from, the word vocabulary in id order, the maximum
prompt length and the corpus it was trained on. The autoencoder (pixel-unshuffle) has no
weights; the noise scheduler is rebuilt from the options, which must match.

What is loaded and what is new when fine-tuning on a target dataset whose class names the corpus
never used (the toy analogue of SD meeting the word "oviduct"):

* the **UNet** — loaded whole: it knows how to draw (edges, shading, textures, shapes, regions)
  and how to follow a prompt through cross-attention; fine-tuning adapts it;
* the **text encoder** — its transformer layers and the embeddings of every corpus word are
  loaded; words the corpus never saw (the target's class names and prompt template) get new
  embedding rows, initialised to the mean corpus word embedding plus the seeded random
  initialisation of a fresh model, and are learnt during fine-tuning (the tiny profile trains
  the text encoder). A word-level vocabulary cannot share sub-words as CLIP's BPE does, so new
  rows are the honest equivalent of a new concept. Class-prompt conditioning thus survives a
  change of class set: nothing is tied to the number or order of classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from saadi_core.errors import DataError

FORMAT = "saadi-embedded-1"

#: prompt length (tokens incl. start/end) the embedded text encoders are built for: the corpus
#: prompts are short, the targets' surgical prompts longer
TEXT_MAX_LENGTH = 24

#: options that fix the architecture; embedded weights load only into the same architecture
ARCHITECTURE_OPTIONS = (
    "autoencoder",
    "unshuffle_factor",
    "block_out_channels",
    "unet_attention",
    "layers_per_block",
    "attention_head_dim",
    "norm_num_groups",
    "text_hidden_size",
    "text_layers",
    "text_heads",
    "num_train_timesteps",
    "beta_schedule",
    "prediction_type",
)


class EmbeddedWeightsError(DataError):
    """An embedded weights file is missing, unreadable or does not fit the options."""


def architecture(options: Any) -> dict[str, Any]:
    """The architecture options of ``options`` as JSON-compatible values."""
    return {key: getattr(options, key) for key in ARCHITECTURE_OPTIONS}


def vocabulary(tokenizer: Any) -> list[str]:
    """The tokenizer's tokens in id order."""
    vocab = tokenizer.get_vocab()
    return sorted(vocab, key=vocab.__getitem__)


def export_weights(
    model: Any, path: Path, *, name: str, options: Any, info: dict[str, Any]
) -> None:
    """Write ``model``'s UNet and text encoder (a :class:`~saadi_core.diffusion.latent.
    LatentDiffusionModel`) to the safetensors file ``path``; ``info`` (corpus, steps, …) goes
    into the metadata next to the configs, vocabulary and architecture."""
    from safetensors.torch import save_file

    tensors = {
        f"unet.{k}": v.detach().cpu().contiguous() for k, v in model.unet.state_dict().items()
    }
    tensors.update(
        {
            f"text_encoder.{k}": v.detach().cpu().contiguous()
            for k, v in model.text_encoder.state_dict().items()
        }
    )
    metadata = {
        "format": FORMAT,
        "generator": name,
        "resolution": str(model.resolution),
        "unet_config": json.dumps(dict(model.unet.config)),
        "text_config": model.text_encoder.config.to_json_string(),
        "vocabulary": json.dumps(vocabulary(model.tokenizer)),
        "max_length": str(model.tokenizer.model_max_length),
        "architecture": json.dumps(architecture(options)),
        "info": json.dumps(info),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)


def read_weights(path: Path, *, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of the embedded weights file ``path`` of generator ``name``; a
    missing, unreadable or foreign file is one :class:`EmbeddedWeightsError` naming it."""
    from safetensors import SafetensorError, safe_open

    hint = "reinstall saadi, or set the generator option pretrained: none to train from scratch"
    if not path.is_file():
        raise EmbeddedWeightsError(
            f"embedded weights of generator '{name}' not found: {path} ({hint})"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:  # damaged header or body
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EmbeddedWeightsError(
            f"embedded weights of generator '{name}' are corrupt or unreadable: {path} ({reason}; {hint})"
        ) from None
    if metadata.get("format") != FORMAT or metadata.get("generator") != name:
        raise EmbeddedWeightsError(
            f"not embedded weights of generator '{name}' (format {metadata.get('format')!r}, generator "
            f"{metadata.get('generator')!r}): {path}"
        )
    return tensors, metadata


def _check_architecture(metadata: dict[str, str], options: Any, name: str, path: Path) -> None:
    from saadi_core.errors import ConfigError
    from saadi_core.options import RENAMED

    # files written before the diffusers vocabulary name some options the old way
    saved = {RENAMED.get(k, k): v for k, v in json.loads(metadata["architecture"]).items()}
    for key, value in architecture(options).items():
        if json.loads(json.dumps(value)) != saved.get(key):
            raise ConfigError(
                f"{name} option '{key}' is {value!r} but the embedded weights ({path.name}) were trained with "
                f"{saved.get(key)!r}: keep the tiny architecture, or set pretrained: none to train this one from scratch"
            )


def extended_tokenizer(
    metadata: dict[str, str], prompts: list[str], *, name: str
) -> tuple[Any, int]:
    """The corpus vocabulary (ids unchanged) extended by every new word of ``prompts``; returns
    the tokenizer and the number of corpus tokens. A prompt longer than the text encoder's
    positions is a :class:`~saadi_core.errors.ConfigError` (it would be cut silently)."""
    from saadi_core.diffusion.builders import (
        BOS_TOKEN,
        EOS_TOKEN,
        PAD_TOKEN,
        UNK_TOKEN,
        build_word_tokenizer,
    )
    from saadi_core.errors import ConfigError

    corpus_vocab: list[str] = json.loads(metadata["vocabulary"])
    max_length = int(metadata["max_length"])
    specials = {PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN}
    words = [w for w in corpus_vocab if w not in specials]
    tokenizer = build_word_tokenizer([" ".join(words), *prompts, ""], max_length=max_length)
    vocab = tokenizer.get_vocab()
    if any(vocab.get(token) != i for i, token in enumerate(corpus_vocab)):
        raise EmbeddedWeightsError(
            f"embedded weights of generator '{name}': the stored vocabulary does not rebuild in order"
        )
    for prompt in prompts:
        length = len(tokenizer(prompt).input_ids)
        if length > max_length:
            raise ConfigError(
                f"{name} option 'prompt_template': the prompt {prompt!r} has {length} tokens, more than the "
                f"{max_length} the embedded text encoder holds; shorten it or set pretrained: none"
            )
    return tokenizer, len(corpus_vocab)


def load_embedded(
    path: Path,
    options: Any,
    prompts: list[str],
    resolution: int,
    *,
    name: str,
    inpainting: bool = False,
    text_time_embedding: bool = False,
) -> Any:
    """A :class:`~saadi_core.diffusion.latent.LatentDiffusionModel` built from ``options`` (which
    must name the embedded architecture) with the pretrained weights of ``path`` loaded: the
    whole UNet, the text encoder's layers and corpus-word embeddings; words of ``prompts`` the
    corpus never used get new rows (mean corpus embedding + the seeded fresh initialisation)."""
    from saadi_core.diffusion.latent import build_from_config

    tensors, metadata = read_weights(path, name=name)
    _check_architecture(metadata, options, name, path)
    tokenizer, n_corpus = extended_tokenizer(metadata, prompts, name=name)
    model = build_from_config(
        options,
        prompts,
        resolution,
        name=name,
        inpainting=inpainting,
        text_time_embedding=text_time_embedding,
        tokenizer=tokenizer,
    )
    unet_state = {k[len("unet.") :]: v for k, v in tensors.items() if k.startswith("unet.")}
    text_state = {
        k[len("text_encoder.") :]: v for k, v in tensors.items() if k.startswith("text_encoder.")
    }
    built = model.text_encoder.state_dict()
    try:
        key = next(
            k for k in built if k.endswith("token_embedding.weight")
        )  # the prefix differs across transformers versions
        stored = text_state[key]
        fresh = built[key].clone()
        if stored.shape[0] != n_corpus or stored.shape[1] != fresh.shape[1]:
            raise ValueError(
                f"token embedding {tuple(stored.shape)} for a vocabulary of {n_corpus}"
            )
        fresh[n_corpus:] += stored.mean(dim=0)
        fresh[:n_corpus] = stored
        text_state[key] = fresh
        model.unet.load_state_dict(unet_state, strict=True)
        model.text_encoder.load_state_dict(text_state, strict=True)
    except (KeyError, RuntimeError, ValueError, StopIteration) as exc:
        reason = str(exc).splitlines()[0]
        raise EmbeddedWeightsError(
            f"embedded weights of generator '{name}' do not fit its model: {path} ({reason})"
        ) from None
    return model
