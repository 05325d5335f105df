"""What one base-training step of the default generator costs on this CPU, and what would make it
cheaper: torch threads (1 or 2) and bfloat16 autocast (the CPU's AMX/AVX-512 bf16 units).

Why: the README's ``saadi run`` trains the ``ssd`` generator for 1600 steps, the largest stage of
the run, and issue 18 asks for the whole run in 6 minutes. The figures say whether the step is
bound by arithmetic (then only fewer steps or cheaper arithmetic help) or by Python overhead
(then running stages side by side on the two cores would).

The network is the ``ssd`` tiny default's UNet, loaded from the embedded weights by the
generator's own ``fit`` (one step on toy-cls), at the run's batch size; the step is forward, the training loss and backward (no optimiser:
its cost does not depend on precision). Each configuration runs in its own subprocess, so the
thread count is set before torch starts its pool. ``--profile`` splits the step into convolution,
attention (the scaled-dot-product kernel itself; its q/k/v and output projections count as the
rest) and the rest.

    python benchmarks/train_step.py [--steps 20] [--threads 1 2] [--profile]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _measure(threads: int, precision: str, steps: int, profile: bool) -> dict[str, float]:
    import contextlib

    import torch

    torch.set_num_threads(threads)
    from saadi_core.registry import get_registry

    registry = get_registry()
    generator = registry.create("generator", "ssd", {"max_steps": 1})
    generator.fit(registry.create("dataset", "toy-cls", {}))  # the embedded weights, one step on
    unet = generator.model.unet
    unet.requires_grad_(True).train()
    cfg = unet.config
    batch = generator.options.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    tokens = generator.model.tokenizer.model_max_length  # the prompt states' length in a run
    text = torch.randn(batch, tokens, cfg.cross_attention_dim, generator=g)

    def autocast() -> contextlib.AbstractContextManager:
        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step() -> None:
        with autocast():
            out = unet(x, t, encoder_hidden_states=text).sample
        out.float().pow(2).mean().backward()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    result = {"ms_per_step": 1000 * (time.perf_counter() - start) / steps}
    if profile:
        from torch.profiler import profile as torch_profile

        with torch_profile() as prof:
            for _ in range(5):
                step()
        shares: dict[str, float] = {"convolution": 0.0, "attention": 0.0, "other": 0.0}
        for event in prof.key_averages():
            name = event.key
            part = (
                "convolution"
                if "convolution" in name
                else "attention"
                if "scaled_dot_product" in name
                else "other"
            )
            shares[part] += event.self_cpu_time_total
        total = sum(shares.values()) or 1.0
        result |= {f"share_{k}": v / total for k, v in shares.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile", action="store_true", help="split the step by operator")
    parser.add_argument("--one", nargs=2, metavar=("THREADS", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        threads, precision = int(args.one[0]), args.one[1]
        print(json.dumps(_measure(threads, precision, args.steps, args.profile)))
        return
    for threads in args.threads:
        for precision in ("fp32", "bf16"):
            command = [sys.executable, __file__, "--one", str(threads), precision]
            command += ["--steps", str(args.steps)] + (["--profile"] if args.profile else [])
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            figures = json.loads(out.strip().splitlines()[-1])
            line = f"threads={threads} {precision}: {figures['ms_per_step']:.1f} ms/step"
            if args.profile:
                line += (
                    " ("
                    + ", ".join(
                        f"{k.removeprefix('share_')} {100 * v:.0f} %"
                        for k, v in figures.items()
                        if k.startswith("share_")
                    )
                    + ")"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
