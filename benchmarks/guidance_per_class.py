"""Per-class oracle pass of a finished toy-cls ``ssd`` run's base and aligned generators, re-sampled
at several guidance scales.

Diffusion-DPO trains the adapter on the conditional prediction only, while the tiny SSD samples
with classifier-free guidance, which also uses the unconditional one. This separates what the
adapter does with guidance from what it does without (the ``evaluation`` seed, ``N`` per class):

    python benchmarks/guidance_per_class.py RUN_DIR [--guidance 1 3] [--n 60]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from per_class_oracle import judge, toy_cls_of  # the sibling script (benchmarks/ is sys.path[0])

from saadi_core.data.toy_cls import CLASS_NAMES
from saadi_core.interfaces import Generator
from saadi_core.registry import get_registry


def load(run: Path, guidance: float, aligned: bool) -> Generator:
    """The run's trained generator (with its aligned adapter) at another guidance scale."""
    manifest = json.loads((run / "manifest.json").read_text())
    stages, config = manifest["stages"], manifest["config"]
    trained = run / stages["train-generator"]["path"]
    options = json.loads((trained / "stage.json").read_text())["params"]["options"]
    registry = get_registry()
    generator = registry.create("generator", "ssd", options | {"guidance_scale": guidance})
    generator.load(trained / "model")
    if aligned:
        aligner = registry.create(
            "aligner", config["aligner"]["kind"], config["aligner"]["options"]
        )
        generator = aligner.restore(generator, run / stages["align"]["path"] / "aligner")
    return generator


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a finished toy-cls run directory (generator ssd)")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--n", type=int, default=60, help="samples per class")
    args = parser.parse_args()
    manifest = json.loads((args.run / "manifest.json").read_text())
    data = toy_cls_of(manifest)
    seed = int(manifest["seeds"]["evaluation"])
    print(f"| guidance | variant | {' | '.join(CLASS_NAMES)} | all |")
    print("|---|---|" + "---|" * (len(CLASS_NAMES) + 1))
    for guidance in args.guidance:
        for aligned in (False, True):
            generator = load(args.run, guidance, aligned)
            passed, labels = judge(data, generator.sample(generator.conditions(data), args.n, seed))
            rates = [f"{100 * passed[labels == c].mean():.0f} %" for c in range(len(CLASS_NAMES))]
            variant = "aligned" if aligned else "base"
            print(
                f"| {guidance:g} | {variant} | {' | '.join(rates)} | {100 * passed.mean():.1f} % |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
