"""Pretrain a tiny generator on the toy pretraining corpus and write its embedded weights.

The role Stable Diffusion's web-scale pretraining plays in the paper: the generator learns to draw
on a large *related but different* corpus (:mod:`saadi_core.data.corpus` — other shapes,
materials, palettes, backgrounds and class names than any target toy set), so that a run only
fine-tunes it on a few hundred target images (``pretrained: embedded``, the tiny default).

    python benchmarks/pretrain.py ssd [--steps 3000] [--out PATH] [--threads 1]
    python benchmarks/pretrain.py ssi [--steps 3000]

``ssd`` (and any class-prompted generator) trains on the shape view ``corpus-cls``; ``ssi`` (mask-
conditioned inpainting) on the material view ``corpus-seg``. The architecture is the generator's
tiny default; the prompts are the corpus captions "An image of {class}". The text encoder is
built for prompts of up to :data:`~saadi_core.diffusion.embedded.TEXT_MAX_LENGTH` tokens so the
targets' longer surgical prompts fit. Default output: the plugin's own
``weights/<generator>-tiny.safetensors`` (shipped as package data). Deterministic for a given
seed and thread count; prints the SHA-256 of the file (record it in ``docs/pretraining.md``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import sys
import time
from pathlib import Path
from typing import Any

#: per generator: corpus view, corpus size, default steps, training-option overrides
RECIPES: dict[str, dict[str, Any]] = {
    "ssd": {
        "view": "cls",
        "n": 6000,
        "steps": 3000,
        "options": {"learning_rate": 1e-3, "lr_warmup_steps": 100},
    },
    "ssi": {
        "view": "seg",
        "n": 4000,
        "steps": 3000,
        "options": {"learning_rate": 1e-3, "lr_warmup_steps": 100},
    },
}


class LogProgress:
    """Progress reporter that prints log events with the elapsed time (for a log file)."""

    def __init__(self) -> None:
        self.start = time.time()

    def track(self, iterable: Any, description: str, total: int | None = None) -> Any:
        return iterable

    def log(self, event: str, **fields: Any) -> None:
        values = " ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()
        )
        print(f"[{time.time() - self.start:7.1f}s] {event} {values}", flush=True)


def default_out(kind: str) -> Path:
    package = importlib.import_module(f"saadi_{kind}")
    return Path(package.__file__).parent / "weights" / f"{kind}-tiny.safetensors"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpointing(model: Any, out: Path, every: int, write: Any) -> Any:
    """Make every base-training loop write the EMA weights to ``<out stem>.latest.safetensors``
    every ``every`` steps (a long CPU pretraining run can be used, or finished by someone else,
    before it ends). Wraps ``LatentTrainingLoop.update``; returns a function that undoes it."""
    from saadi_core.diffusion.latent_training import LatentTrainingLoop

    original = LatentTrainingLoop.update
    latest = out.with_name(f"{out.name.split('.')[0]}.latest.safetensors")

    def update(loop: Any, loss: Any) -> None:
        original(loop, loss)
        step = len(loop.history)
        if every and step % every == 0 and step < loop.options.max_steps:
            if loop.ema is not None:
                loop.ema.ema.store(loop.ema.parameters)
                loop.ema.copy_to()
            write(latest, step)
            if loop.ema is not None:
                loop.ema.ema.restore(loop.ema.parameters)

    LatentTrainingLoop.update = update  # type: ignore[method-assign]
    return lambda: setattr(LatentTrainingLoop, "update", original)


def pretrain(
    kind: str,
    steps: int,
    out: Path,
    seed: int = 0,
    n: int | None = None,
    checkpoint_every: int = 250,
) -> Path:
    import torch

    from saadi_core.data.corpus import (
        CORPUS_PROMPT,
        CORPUS_VERSION,
        make_corpus_cls,
        make_corpus_seg,
    )
    from saadi_core.diffusion.builders import (
        build_clip_text_encoder,
        build_word_tokenizer,
        make_accelerator,
    )
    from saadi_core.diffusion.embedded import TEXT_MAX_LENGTH, export_weights
    from saadi_core.diffusion.latent import build_from_config
    from saadi_core.interfaces import RunContext
    from saadi_core.registry import get_registry

    recipe = RECIPES[kind]
    size = n or recipe["n"]
    progress = LogProgress()
    corpus = (make_corpus_cls if recipe["view"] == "cls" else make_corpus_seg)(seed=seed, n=size)
    progress.log(
        "corpus", name=corpus.name, images=len(corpus.train), classes=len(corpus.class_names)
    )
    options = {
        **recipe["options"],
        "pretrained": "none",
        "seed": seed,
        "max_steps": steps,
        "prompt_template": CORPUS_PROMPT,
        "log_every": 100,
    }
    generator = get_registry().create("generator", kind, options, RunContext(progress=progress))
    opts = generator.options
    prompts = [generator.prompt(name) for name in corpus.class_names]
    model = build_from_config(
        opts,
        prompts,
        opts.resolution or corpus.image_size,
        name=generator.name,
        inpainting=generator.inpainting,
        text_time_embedding=generator._text_time_embedding,
    )
    # a text encoder with room for the targets' longer prompts (same seeded initialisation rule)
    model.tokenizer = build_word_tokenizer([*prompts, ""], max_length=TEXT_MAX_LENGTH)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed + 7)
        model.text_encoder = build_clip_text_encoder(
            model.tokenizer, opts.text_hidden_size, opts.text_layers, opts.text_heads
        )
    accelerator = make_accelerator(None, "cpu", opts.mixed_precision, who=f"generator '{kind}'")
    start = time.time()

    def info_at(step: int, history: list[dict[str, float]]) -> dict[str, Any]:
        return {
            "corpus": corpus.name,
            "corpus_version": CORPUS_VERSION,
            "corpus_images": len(corpus.train),
            "corpus_seed": seed,
            "prompt_template": CORPUS_PROMPT,
            "class_names": corpus.class_names,
            "steps": step,
            "final_loss_100": sum(h["loss"] for h in history[-100:]) / max(len(history[-100:]), 1),
            "train_seconds": round(time.time() - start, 1),
            "torch_threads": torch.get_num_threads(),
            "command": " ".join(sys.argv),
        }

    def write(path: Path, step: int, history: list[dict[str, float]] | None = None) -> None:
        export_weights(
            model, path, name=generator.name, options=opts, info=info_at(step, history or [])
        )
        progress.log(
            "checkpoint" if path != out else "saved", path=str(path), step=step, sha256=sha256(path)
        )

    undo = checkpointing(model, out, checkpoint_every, write)
    try:
        history = generator._train(model, corpus, prompts, accelerator)
    finally:
        undo()
    seconds = time.time() - start
    write(out, steps, history)
    progress.log("done", mb=out.stat().st_size / 2**20, seconds=seconds)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("generator", choices=sorted(RECIPES))
    parser.add_argument(
        "--steps", type=int, default=None, help="optimiser steps (default: the recipe's)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="safetensors file (default: the plugin's weights/)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=None, help="corpus images (default: the recipe's)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 = reproducible on the reference box)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=250,
        help="steps between <name>.latest.safetensors checkpoints (0 = none)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    recipe = RECIPES[args.generator]
    pretrain(
        args.generator,
        args.steps or recipe["steps"],
        args.out or default_out(args.generator),
        seed=args.seed,
        n=args.n,
        checkpoint_every=args.checkpoint_every,
    )


if __name__ == "__main__":
    main()
