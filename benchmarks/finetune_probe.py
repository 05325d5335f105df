"""How many fine-tuning steps does the embedded SSD need? A cheap probe without the whole loop.

For each step count: build ``ssd`` with the tiny defaults (``pretrained: embedded``, or ``none``),
fine-tune it on toy-cls (500 train images, dataset seed = ``--seed``), draw ``--per-class``
samples per class and count the toy oracle's passes (no selector, pool or alignment). Use tuning
seeds (10, 11), not the reporting seeds 0-2.

    python benchmarks/finetune_probe.py --steps 0 200 400 [--pretrained embedded|none] [--weights FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 200, 400])
    parser.add_argument("--pretrained", choices=["embedded", "none"], default="embedded")
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="embedded weights file (default: the shipped one)",
    )
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=32)
    parser.add_argument("--version", type=int, default=2, help="toy-cls version (1 or 2)")
    parser.add_argument(
        "--set", nargs="*", default=[], help="extra ssd options key=value (numbers parsed)"
    )
    args = parser.parse_args()

    import numpy as np

    from saadi_core.data.toy_cls import make_toy_cls
    from saadi_core.registry import get_registry

    dataset = make_toy_cls(seed=args.seed, version=args.version)
    extra = {}
    for item in args.set:
        key, value = item.split("=", 1)
        try:
            extra[key] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            extra[key] = value
    for steps in args.steps:
        options = {"pretrained": args.pretrained, "max_steps": steps, "seed": args.seed, **extra}
        generator = get_registry().create("generator", "ssd", options)
        if args.weights is not None:
            type(generator).embedded_weights = lambda self, path=args.weights: path  # type: ignore[method-assign]
        start = time.time()
        generator.fit(dataset)
        trained = time.time() - start
        samples = generator.sample(
            generator.conditions(dataset), args.per_class, seed=1000 + args.seed
        )
        images = np.stack(
            [
                ((s.image.permute(1, 2, 0).numpy() + 1) * 127.5)
                .round()
                .clip(0, 255)
                .astype(np.uint8)
                for s in samples
            ]
        )
        labels = np.array([s.condition.class_id for s in samples])
        passed = dataset.oracle.check(images, labels=labels)
        per_class = " / ".join(
            f"{passed[labels == k].mean():.2f}" for k in range(len(dataset.class_names))
        )
        print(
            f"toy-cls v{args.version} pretrained={args.pretrained} steps={steps} train={trained:.0f}s oracle pass={passed.mean():.3f} "
            f"(n={len(passed)}; {'/'.join(dataset.class_names)}: {per_class}) {extra}",
            flush=True,
        )


if __name__ == "__main__":
    main()
