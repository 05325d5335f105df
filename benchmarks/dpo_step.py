"""Time and peak memory per Diffusion-DPO step: the ``diffusion-dpo`` aligner's design versus a
straightforward implementation, on the same model, pairs and batch (issue 4 target: ≥ 1.5× faster,
≤ 0.7× memory).

* ``design`` — the real aligner (``saadi_align.dpo.DiffusionDPO.align``): winners/losers encoded
  once up front, reference = the same UNet with LoRA disabled under ``torch.inference_mode``, one
  forward with winner+loser concatenated.
* ``naive`` — a deep-copied frozen reference UNet, winners and losers re-encoded every step, two
  separate adapted forwards (winner, loser) and two reference forwards under ``no_grad``. Same
  LoRA, optimiser, loss function (``diffusion_dpo_loss``) and gradient clipping.

The model is a tiny-profile-sized latent diffusion generator built here: 64-px images, latents
32×32×12 from either a fixed pixel-unshuffle (the ``ssd`` tiny default kind of autoencoder) or a
small ``AutoencoderKL`` (what a latent SD model pays for encoding), a 2-layer CLIP text encoder of
width 64 and a ``UNet2DConditionModel`` (64, 128) with cross-attention, v-prediction.

Memory: each variant runs in its own subprocess; ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is
read once the shared setup is done (imports, base model, samples) and again after the steps. The
difference is the memory the DPO loop itself needed (reference copy, caches, activations,
optimiser state); the absolute peak RSS is printed too. ``tracemalloc`` does not see torch's
allocations, and CPU torch has no allocator statistics, hence RSS.

    python benchmarks/dpo_step.py [--autoencoder unshuffle|kl|both] [--steps 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

VARIANTS = ("design", "naive", "design+ckpt")


#: model configurations: "tiny" is the tiny profile's scale; "sd-like" has Stable Diffusion 1.5's
#: UNet and VAE widths (860 M-parameter UNet) at a small resolution, where parameters, not
#: activations, dominate memory — the regime of the paper profile on a GPU
MODELS: dict[str, dict[str, Any]] = {
    "tiny": {
        "image": 64,
        "pairs_per_step": 8,
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        "vae": {"latent_channels": 12, "block_out_channels": (32, 64), "layers_per_block": 1},
        "unshuffle": 2,
        "unet": {
            "block_out_channels": (64, 128),
            "layers_per_block": 1,
            "attention_head_dim": 4,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        },
    },
    "sd-like": {
        "image": 128,
        "pairs_per_step": 2,
        "text": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 2,
            "num_attention_heads": 12,
        },
        "vae": {
            "latent_channels": 4,
            "block_out_channels": (128, 256, 512, 512),
            "layers_per_block": 2,
        },
        "unshuffle": None,
        "unet": {
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "attention_head_dim": 8,
            "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        },
    },
}


def build_generator(model: str, autoencoder: str, seed: int = 0) -> Any:
    """A minimal SSD-like generator implementing the DiffusionTarget protocol."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from saadi_core.interfaces import Generator
    from saadi_core.registry import NoOptions

    cfg = MODELS[model]

    class BenchGenerator(Generator):
        kind = "bench-ldm"

        def __init__(self) -> None:
            super().__init__(NoOptions())
            torch.manual_seed(seed)
            self.text_encoder = CLIPTextModel(
                CLIPTextConfig(vocab_size=64, max_position_embeddings=16, **cfg["text"])
            ).eval()
            vae = cfg["vae"]
            levels = len(vae["block_out_channels"])
            self.vae = (
                AutoencoderKL(
                    in_channels=3,
                    out_channels=3,
                    down_block_types=("DownEncoderBlock2D",) * levels,
                    up_block_types=("UpDecoderBlock2D",) * levels,
                    norm_num_groups=32,
                    **vae,
                ).eval()
                if autoencoder == "kl"
                else None
            )
            factor = 2 ** (levels - 1) if autoencoder == "kl" else cfg["unshuffle"]
            channels = vae["latent_channels"] if autoencoder == "kl" else 3 * factor**2
            self.factor = factor
            self.unet = UNet2DConditionModel(
                sample_size=cfg["image"] // factor,
                in_channels=channels,
                out_channels=channels,
                cross_attention_dim=cfg["text"]["hidden_size"],
                norm_num_groups=32,
                **cfg["unet"],
            )
            self.latent_shape = (channels, cfg["image"] // factor, cfg["image"] // factor)
            self.noise_scheduler = DDPMScheduler(
                num_train_timesteps=1000, prediction_type="v_prediction"
            )

        def diffusion_target(self) -> BenchGenerator:
            return self

        def encode(self, samples: Sequence[Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            images = torch.stack([s.image for s in samples])
            if self.vae is None:
                x0 = torch.nn.functional.pixel_unshuffle(images, self.factor)
            else:
                x0 = self.vae.encode(images).latent_dist.mode()
            ids = torch.tensor(
                [[1 + (s.condition.class_id or 0), 2, 3, 4, 5, 6, 7, 0] for s in samples]
            )
            return x0, {"encoder_hidden_states": self.text_encoder(ids).last_hidden_state}

        def predict(
            self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
        ) -> torch.Tensor:
            return self.unet(x_t, t, cond["encoder_hidden_states"]).sample

        def trainable_module(self) -> torch.nn.Module:
            return self.unet

        def lora_target_modules(self) -> list[str]:
            return ["to_q", "to_k", "to_v", "to_out.0"]

        def fit(self, dataset: Any) -> None: ...
        def conditions(self, dataset: Any) -> list[Any]: ...
        def sample(self, conditions: Any, n_per_condition: int, seed: int) -> list[Any]: ...
        def save(self, path: Any) -> None: ...
        def load(self, path: Any) -> None: ...

    return BenchGenerator()


def make_pairs(n_pairs: int, size: int, seed: int = 0) -> Any:
    import torch

    from saadi_core.interfaces import Condition, Pair, PairSet, Sample

    g = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(n_pairs):
        cond = Condition(id=f"class:{i % 5}", class_id=i % 5)
        w, l = (torch.rand(2, 3, size, size, generator=g) * 2 - 1).unbind(0)
        pairs.append(
            Pair(
                Sample(w, cond, "bench", 0, 2 * i), Sample(l, cond, "bench", 0, 2 * i + 1), 0.9, 0.1
            )
        )
    return PairSet(pairs=pairs)


class StepClock:
    """Progress reporter that timestamps every ``dpo_step`` event of the real aligner."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def track(self, iterable: Any, description: str, total: int | None = None) -> Any:
        self.start = time.perf_counter()
        return iterable

    def log(self, event: str, **fields: Any) -> None:
        if event == "dpo_step":
            self.times.append(time.perf_counter())


def run_design(gen: Any, pairs: Any, args: argparse.Namespace) -> tuple[list[float], float]:
    from saadi_align.dpo import DiffusionDPO
    from saadi_align.options import DiffusionDPOOptions

    from saadi_core.interfaces import AlignInputs, RunContext

    clock = StepClock()
    options = DiffusionDPOOptions(
        steps=args.warmup + args.steps,
        batch_size=args.batch,
        rank=8,
        seed=0,
        gradient_checkpointing=args.variant == "design+ckpt",
    )
    result = DiffusionDPO(options, RunContext(progress=clock)).align(
        gen, AlignInputs(pairs=pairs, dataset=None), None
    )
    marks = [clock.start, *clock.times]
    return [b - a for a, b in zip(marks, marks[1:])][args.warmup :], result.meta["encode_seconds"]


def run_naive(gen: Any, pairs: Any, args: argparse.Namespace) -> tuple[list[float], float]:
    import torch

    from saadi_core.diffusion.dpo import diffusion_dpo_loss
    from saadi_core.diffusion.lora import attach_lora, lora_config
    from saadi_core.diffusion.targets import training_target

    reference = copy.deepcopy(gen.unet).requires_grad_(False).eval()
    params = attach_lora(gen.unet, lora_config(gen.lora_target_modules(), rank=8), "naive")
    gen.unet.eval()
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    scheduler = gen.noise_scheduler
    rng = torch.Generator().manual_seed(0)
    times = []
    for _ in range(args.warmup + args.steps):
        start = time.perf_counter()
        batch = [
            pairs.pairs[int(i)] for i in torch.randint(0, len(pairs), (args.batch,), generator=rng)
        ]
        with torch.no_grad():
            x0_w, cond_w = gen.encode([p.winner for p in batch])
            x0_l, cond_l = gen.encode([p.loser for p in batch])
        noise = torch.randn(x0_w.shape, generator=rng)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), generator=rng)
        xt_w, xt_l = scheduler.add_noise(x0_w, noise, t), scheduler.add_noise(x0_l, noise, t)
        pred_w = gen.predict(xt_w, t, cond_w)
        pred_l = gen.predict(xt_l, t, cond_l)
        with torch.no_grad():
            ref_w = reference(xt_w, t, cond_w["encoder_hidden_states"]).sample
            ref_l = reference(xt_l, t, cond_l["encoder_hidden_states"]).sample
        target = torch.cat(
            [training_target(scheduler, x0_w, noise, t), training_target(scheduler, x0_l, noise, t)]
        )
        out = diffusion_dpo_loss(
            torch.cat([pred_w, pred_l]), torch.cat([ref_w, ref_l]), target, beta=2000.0
        )
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[args.warmup :], 0.0


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    gen = build_generator(args.model, args.autoencoder)
    pairs = make_pairs(args.pairs, MODELS[args.model]["image"])
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, encode_s = (run_naive if args.variant == "naive" else run_design)(gen, pairs, args)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    unet_params = sum(p.numel() for n, p in gen.unet.named_parameters() if "lora_" not in n)
    print(
        json.dumps(
            {
                "step_s": statistics.median(times),
                "peak_mib": peak_kib / 1024,
                "loop_mib": (peak_kib - base_kib) / 1024,
                "encode_once_s": encode_s,
                "unet_params": unet_params,
                "latent": list(gen.latent_shape),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="tiny")
    parser.add_argument(
        "--autoencoder",
        choices=["unshuffle", "kl", "both"],
        default="both",
        help="tiny model only; sd-like always uses its KL autoencoder",
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="pairs per step (default: 8 tiny, 2 sd-like)"
    )
    parser.add_argument("--pairs", type=int, default=64, help="preference pairs in the set")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=3, help="subprocess runs per variant (alternating)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 = steadier on a shared machine)",
    )
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch = args.batch or MODELS[args.model]["pairs_per_step"]
    if args.variant:
        child(args)
        return

    if args.model != "tiny":
        autoencoders = ["kl"]
    else:
        autoencoders = ["unshuffle", "kl"] if args.autoencoder == "both" else [args.autoencoder]
    print(
        f"model {args.model}, batch {args.batch} pairs, {args.pairs} pairs in the set, {args.threads} thread(s), "
        f"median of {args.steps} steps, {args.repeats} run(s) per variant"
    )
    print(f"{'autoencoder':12} {'variant':12} {'s/step':>8} {'loop MiB':>9} {'peak MiB':>9}")
    for ae in autoencoders:
        results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for _ in range(args.repeats):
            for variant in VARIANTS:
                argv = [
                    sys.executable,
                    __file__,
                    "--variant",
                    variant,
                    "--model",
                    args.model,
                    "--autoencoder",
                    ae,
                ]
                for flag in ("batch", "pairs", "steps", "warmup", "threads"):
                    argv += [f"--{flag}", str(getattr(args, flag))]
                out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
                results[variant].append(json.loads(out.strip().splitlines()[-1]))
        med = {
            v: {
                k: statistics.median(r[k] for r in rs)
                for k in ("step_s", "loop_mib", "peak_mib", "encode_once_s")
            }
            for v, rs in results.items()
        }
        for variant in VARIANTS:
            m = med[variant]
            print(
                f"{ae:12} {variant:12} {m['step_s']:8.3f} {m['loop_mib']:9.1f} {m['peak_mib']:9.1f}"
            )
        naive = med["naive"]
        for variant in ("design", "design+ckpt"):
            m = med[variant]
            print(
                f"{ae:12} {variant}: speed-up {naive['step_s'] / m['step_s']:.2f}x (target >= 1.5x), memory vs naive: "
                f"loop {m['loop_mib'] / naive['loop_mib']:.2f}x, whole process {m['peak_mib'] / naive['peak_mib']:.2f}x "
                "(target <= 0.7x)"
            )
        first = results["naive"][0]
        print(
            f"{ae:12} UNet {first['unet_params'] / 1e6:.1f} M params, latents {'x'.join(map(str, first['latent']))}; "
            f"the design encodes {2 * args.pairs} samples once in {med['design']['encode_once_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
