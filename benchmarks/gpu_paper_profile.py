"""The paper profile's cost on a GPU, prepared: Diffusion-DPO step time and peak memory of LoRA r8
versus full fine-tuning, and sampling throughput, at Stable Diffusion 1.5's scale. One JSON line.

    python benchmarks/gpu_paper_profile.py [--pretrained SD15_DIR] [--time-limit 1800]
    python benchmarks/gpu_paper_profile.py --size toy --device cpu      # CI: a toy size on a CPU

* model — ``--pretrained``: a local diffusers SD-1.5-shaped directory, loaded the way the ``ssd``
  generator's ``paper`` profile loads it; without it, random weights at SD 1.5's widths
  (:data:`saadi_core.diffusion.miniature.SD15`: an 860 M-parameter UNet, the 8x VAE, a 12-layer
  768-wide CLIP text encoder). ``--size toy`` uses the miniature widths instead (32 px).
* ``full`` runs first (it leaves the UNet as it found it), then ``lora-r8``.
* ``lora-r8`` — the real ``diffusion-dpo`` aligner (the design every run uses): rank-8 LoRA on the
  attention projections, the reference = the same UNet with the adapter off, winner and loser in
  one forward, bf16 autocast; the paper's lr, β and batch.
* ``full`` — the straightforward structure: every UNet weight trained (AdamW), a frozen deep copy
  as the reference, the same loss (:func:`saadi_core.diffusion.dpo.diffusion_dpo_loss`), batch and
  autocast.
* sampling — the ``ssd`` generator's sampler at the paper's 30 DDIM steps, guidance 7.5,
  images/s over ``--samples`` images.

Step time is the median over ``--steps`` timed steps after ``--warmup``. Peak memory is
``torch.cuda.max_memory_allocated`` per variant (reset in between); a CPU has no such counter, so
it is ``null`` there. ``--time-limit`` stops the script (SIGALRM): the JSON line then has
``"timed_out": true`` and what was measured so far, and the exit code is 3. An out-of-memory
variant is reported as ``"oom"``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLASSES = ["uterus", "ovary"]


class TimeLimit(BaseException):
    """Raised by SIGALRM; a BaseException so no library's ``except Exception`` swallows it."""


class StepClock:
    """Progress reporter that timestamps the aligner's ``dpo_step`` events."""

    def __init__(self) -> None:
        self.start = 0.0
        self.times: list[float] = []

    def track(self, iterable: Any, description: str, total: int | None = None) -> Any:
        self.start = time.perf_counter()
        return iterable

    def log(self, event: str, **fields: Any) -> None:
        if event == "dpo_step":
            self.times.append(time.perf_counter())

    def say(self, message: str) -> None:
        pass


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def build_generator(args: argparse.Namespace, device: str, scratch: Path) -> Any:
    """An ``ssd`` generator with the paper profile's options and a model from ``--pretrained``,
    from random SD-1.5 widths, or (``--size toy``) from a miniature directory written here."""
    from saadi_core.diffusion.builders import KLAutoencoder
    from saadi_core.diffusion.latent import LatentDiffusionModel, load_pretrained
    from saadi_core.diffusion.miniature import MINIATURE, SD15, build_parts, save_stable_diffusion
    from saadi_core.interfaces import RunContext
    from saadi_core.registry import Registry

    shape = MINIATURE if args.size == "toy" else SD15
    pretrained = args.pretrained
    source = str(pretrained)
    if pretrained is None and args.size == "toy":
        pretrained = save_stable_diffusion(scratch / "sd")
        source = "random weights at miniature widths (toy)"
    options = {
        "pretrained": str(pretrained) if pretrained else None,
        "resolution": args.resolution,
        "mixed_precision": "bf16",
        "sampling_steps": args.sampling_steps,
        "sample_batch_size": args.sample_batch,
    }
    generator = Registry.discover().create(
        "generator", "ssd", options, context=RunContext(device=device), profile="paper"
    )
    if pretrained is not None:
        model = load_pretrained(generator.options, args.resolution, name="ssd")
    else:
        parts = build_parts(shape)
        model = LatentDiffusionModel(
            parts["unet"],
            parts["text_encoder"],
            parts["tokenizer"],
            KLAutoencoder(parts["vae"]),
            parts["scheduler"],
            args.resolution,
        )
        source = "random weights at SD 1.5 widths"
    for module in model.modules():
        module.requires_grad_(False).eval()
    generator.model = model.to(device)
    generator.class_names, generator.image_size = list(CLASSES), args.resolution
    generator.model_source = source
    return generator


def make_pairs(n: int, size: int) -> Any:
    import torch

    from saadi_core.interfaces import Condition, Pair, PairSet, Sample

    g = torch.Generator().manual_seed(0)
    pairs = []
    for i in range(n):
        name = CLASSES[i % len(CLASSES)]
        cond = Condition(id=f"class:{name}", class_id=i % len(CLASSES), class_name=name)
        w, l = (torch.rand(2, 3, size, size, generator=g) * 2 - 1).unbind(0)
        pairs.append(
            Pair(
                Sample(w, cond, "bench", 0, 2 * i), Sample(l, cond, "bench", 0, 2 * i + 1), 0.9, 0.1
            )
        )
    return PairSet(pairs=pairs)


def dpo_lora(generator: Any, pairs: Any, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The real aligner, rank 8, paper settings; returns step times and peak memory."""
    from saadi_core.interfaces import AlignInputs, RunContext
    from saadi_core.registry import Registry

    clock = StepClock()
    options = {
        "steps": args.warmup + args.steps,
        "batch_size": args.batch,
        "rank": 8,
        "seed": 0,
        "mixed_precision": "bf16",
    }
    aligner = Registry.discover().create(
        "aligner",
        "diffusion-dpo",
        options,
        context=RunContext(device=device, progress=clock),
        profile="paper",
    )
    _reset_peak(device)
    result = aligner.align(generator, AlignInputs(pairs=pairs, dataset=None), None)
    _sync(device)
    marks = [clock.start, *clock.times]
    steps = [b - a for a, b in itertools.pairwise(marks)][args.warmup :]
    trainable = result.meta.get("lora", {}).get("trainable_parameters")
    return {
        "step_s": statistics.median(steps),
        "peak_mib": _peak_mib(device),
        "trainable_parameters": trainable,
    }


def dpo_full(generator: Any, pairs: Any, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Full fine-tuning: every UNet weight trained, a frozen deep copy as the reference."""
    import torch

    from saadi_core.diffusion.dpo import diffusion_dpo_loss
    from saadi_core.diffusion.targets import training_target

    target = generator.diffusion_target()
    unet = target.trainable_module()
    _reset_peak(device)
    reference = copy.deepcopy(unet).requires_grad_(False).eval()
    unet.requires_grad_(True).train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-2)
    scheduler = target.noise_scheduler
    samples = [p.winner for p in pairs.pairs] + [p.loser for p in pairs.pairs]
    x0_all, cond_all = target.encode(samples)  # encoded once, as the aligner does
    n = len(pairs.pairs)
    rng = torch.Generator().manual_seed(0)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    times = []
    try:
        for _ in range(args.warmup + args.steps):
            _sync(device)
            start = time.perf_counter()
            rows = torch.randint(0, n, (args.batch,), generator=rng)
            index = torch.cat([rows, rows + n]).to(x0_all.device)
            x0 = x0_all[index]
            cond = {k: v[index] for k, v in cond_all.items()}
            noise = torch.randn(x0[: args.batch].shape, generator=rng).to(x0).repeat(2, 1, 1, 1)
            t = (
                torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), generator=rng)
                .to(x0.device)
                .repeat(2)
            )
            x_t = scheduler.add_noise(x0, noise, t)
            with autocast:
                pred = target.predict(x_t, t, cond)
                with torch.no_grad():
                    ref = reference(
                        x_t, t, encoder_hidden_states=cond["encoder_hidden_states"]
                    ).sample
            out = diffusion_dpo_loss(
                pred, ref, training_target(scheduler, x0, noise, t), beta=2500.0
            )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            _sync(device)
            times.append(time.perf_counter() - start)
    finally:  # back to a frozen UNet without the optimiser, gradients or reference copy
        unet.requires_grad_(False).eval()
        for p in params:
            p.grad = None
        del optimizer, reference
    return {
        "step_s": statistics.median(times[args.warmup :]),
        "peak_mib": _peak_mib(device),
        "trainable_parameters": sum(p.numel() for p in params),
    }


def sampling(generator: Any, args: argparse.Namespace, device: str) -> dict[str, Any]:
    from saadi_core.interfaces import Condition

    conditions = [
        Condition(id=f"class:{c}", class_id=i, class_name=c, prompt=generator.prompt(c))
        for i, c in enumerate(CLASSES)
    ]
    per_condition = max(1, args.samples // len(conditions))
    generator.sample(conditions[:1], 1, seed=0)  # warm-up (kernels, allocator)
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    images = generator.sample(conditions, per_condition, seed=1)
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        "images": len(images),
        "seconds": seconds,
        "images_per_s": len(images) / seconds,
        "peak_mib": _peak_mib(device),
        "steps": args.sampling_steps,
        "guidance_scale": generator.options.guidance_scale,
    }


def guarded(fn: Any, *a: Any) -> Any:
    """``fn(*a)``, or ``"oom"`` when the device runs out of memory."""
    import torch

    try:
        return fn(*a)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return "oom"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pretrained", type=Path, default=None, help="local diffusers SD-1.5-shaped directory"
    )
    parser.add_argument(
        "--size", choices=["sd15", "toy"], default="sd15", help="widths without --pretrained"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--resolution", type=int, default=None, help="default: 512 (sd15), 32 (toy)"
    )
    parser.add_argument(
        "--batch", type=int, default=4, help="preference pairs per DPO step (paper: 4)"
    )
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument(
        "--steps", type=int, default=10, help="timed DPO steps per variant (median reported)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--samples", type=int, default=16, help="images for the sampling throughput"
    )
    parser.add_argument("--sampling-steps", type=int, default=30)
    parser.add_argument("--sample-batch", type=int, default=8)
    parser.add_argument(
        "--time-limit", type=int, default=1800, help="seconds before the script stops itself"
    )
    args = parser.parse_args(argv)
    args.resolution = args.resolution or (
        32 if args.size == "toy" and args.pretrained is None else 512
    )

    import torch

    from saadi_core.device import resolve_device

    device = resolve_device(args.device)
    result: dict[str, Any] = {
        "device": device,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        "resolution": args.resolution,
        "precision": "bf16",
        "batch_pairs": args.batch,
        "timed_out": False,
    }

    expired = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal expired
        expired = True
        raise TimeLimit

    def check() -> None:
        """Stop at the next phase when the limit has passed but the alarm did not stop the
        script: a library's bare ``except:`` swallowed it, or the parent had SIGALRM blocked
        (the mask is inherited). Seen once under CI load: a 1 s limit ran 8.7 s to the end."""
        if expired or time.perf_counter() - start > args.time_limit:
            raise TimeLimit

    signal.signal(signal.SIGALRM, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    start = time.perf_counter()
    signal.alarm(args.time_limit)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            generator = build_generator(args, device, Path(scratch))
            check()
            result["model"] = generator.model_source
            result["unet_parameters"] = sum(p.numel() for p in generator.model.unet.parameters())
            pairs = make_pairs(args.pairs, args.resolution)
            # full first: it leaves the UNet as it found it (frozen, no adapter), while the
            # aligner leaves its adapter on, which sampling then goes through (an aligned model)
            result["dpo"] = {"full": guarded(dpo_full, generator, pairs, args, device)}
            check()
            result["dpo"]["lora-r8"] = guarded(dpo_lora, generator, pairs, args, device)
            check()
            lora, full = result["dpo"]["lora-r8"], result["dpo"]["full"]
            if isinstance(lora, dict) and isinstance(full, dict):
                result["dpo"]["full_over_lora_step_time"] = full["step_s"] / lora["step_s"]
                if lora["peak_mib"] and full["peak_mib"]:
                    result["dpo"]["full_over_lora_peak_memory"] = (
                        full["peak_mib"] / lora["peak_mib"]
                    )
            result["sampling"] = guarded(sampling, generator, args, device)
            check()
    except TimeLimit:
        result["timed_out"] = True
    finally:
        signal.alarm(0)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))
    return 3 if result["timed_out"] else 0


if __name__ == "__main__":
    sys.exit(main())
