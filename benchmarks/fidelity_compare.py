"""How the ``fidelity-compare`` bootstrap's cost grows with the number of samples.

    python benchmarks/fidelity_compare.py [--dim 512] [--samples 50 100 200 500 1000] [--resamples 200]

Times the paired FID bootstrap the ``fid`` metric runs (``compare_resamples`` resamples, each two
Fréchet distances against the fixed real set) on random features of the selector's feature size,
and prints seconds per comparison for each synthetic-set size. Each resample costs
O(n·d²) + O(min(n, d)³) (``saadi_metrics.distribution._Frechet``): small sets are cheap.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from saadi_metrics.distribution import _Frechet


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=512, help="feature dimensions (resnet18: 512)")
    parser.add_argument("--real", type=int, default=400, help="real images")
    parser.add_argument("--samples", type=int, nargs="+", default=[50, 100, 200, 500, 1000])
    parser.add_argument("--resamples", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(args.dim, args.dim)) / np.sqrt(args.dim)
    frechet = _Frechet(rng.normal(size=(args.real, args.dim)) @ mixing)
    print(f"dim {args.dim}, {args.real} real images, {args.resamples} resamples x 2 distances")
    for n in args.samples:
        base = rng.normal(size=(n, args.dim)) @ mixing
        aligned = base + 0.1
        start = time.perf_counter()
        for _ in range(args.resamples):
            rows = rng.integers(0, n, n)
            frechet.distance(base[rows])
            frechet.distance(aligned[rows])
        print(f"{n:6d} samples: {time.perf_counter() - start:6.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
