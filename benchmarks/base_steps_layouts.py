"""Is a mask-conditioned base generator converged for layouts it has never seen?

For each step count: train the generator (default ``ssi`` at its tiny defaults) on toy-seg, then
sample the first ``--layouts`` unseen layouts ``--per-layout`` times each from the same seeds and
count the toy oracle's passes. Every step count after the first is compared with the first,
paired sample by sample and tested over layouts (the layout is the unit: its samples pass or fail
together), as the evaluation stage does. No selector, pool or alignment. Use tuning seeds (10,
11), not the reporting seeds 0-2.

    python benchmarks/base_steps_layouts.py --steps 600 1200 [--generator ssi] [--seed 10]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[600, 1200])
    parser.add_argument("--generator", default="ssi")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--n-layouts", type=int, default=256, help="unseen layouts drawn")
    parser.add_argument("--layouts", type=int, default=128, help="layouts sampled")
    parser.add_argument("--per-layout", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import torch

    from saadi_core.data.options import ToySegOptions
    from saadi_core.data.toy_seg import build
    from saadi_core.evaluation.conditions import UNSEEN, evaluation_conditions
    from saadi_core.evaluation.stats import condition_paired_test
    from saadi_core.registry import get_registry
    from saadi_core.samples_io import to_uint8_nhwc

    dataset = build(ToySegOptions(seed=args.seed, n_layouts=args.n_layouts))
    assert dataset.oracle is not None
    first: np.ndarray | None = None
    for steps in args.steps:
        generator = get_registry().create(
            "generator", args.generator, {"max_steps": steps, "seed": args.seed}
        )
        start = time.time()
        generator.fit(dataset)
        trained = time.time() - start
        conditions, _ = evaluation_conditions(generator, dataset, UNSEEN, args.layouts)
        samples = generator.sample(conditions, args.per_layout, seed=2000 + args.seed)
        images = to_uint8_nhwc(torch.stack([s.image for s in samples]))
        masks = torch.stack([s.mask for s in samples]).numpy()
        passed = np.asarray(dataset.oracle.check(images, masks=masks), dtype=bool)
        groups = [s.condition.id for s in samples]
        line = (
            f"{args.generator} steps={steps} train={trained:.0f}s oracle pass={passed.mean():.3f} "
            f"(n={len(passed)}, {len(set(groups))} layouts)"
        )
        if first is None:
            first = passed
        else:
            test = condition_paired_test(groups, first, passed)
            if test is not None:
                low, high = test["ci95"]
                line += (
                    f"; − steps={args.steps[0]}: {test['difference_points']:+.1f} points "
                    f"[{low:+.1f}, {high:+.1f}] over layouts, p = {test['p_value']:.2g}"
                )
        print(line, flush=True)


if __name__ == "__main__":
    main()
