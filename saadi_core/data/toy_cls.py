"""``toy-cls``: a LapGyn-like organ classification set drawn procedurally.

Five organ classes with deliberately unequal shares (uterus 40 %, ovary 25 %, colon 15 %,
liver 12 %, oviduct 8 %), one organ per image on wet pink tissue. The class is carried by the
organ's **shape** only:

* colon — a ring (annulus, slightly elliptical);
* liver — a large irregular triangle (wedge);
* ovary — two small separate disks;
* oviduct — a long, thin, curved band;
* uterus — a large filled ellipse.

Organ colours are drawn from one palette shared by all classes. A feasibility probe showed why:
when colour identified the class, a selector trained on real data learnt colour alone and could
not see a generator that got colours right and shapes wrong. Here a model has to learn shape, as
it has to on real organs. The known rule lets :class:`~saadi_core.data.oracle_cls.ToyClsOracle`
decide from pixels whether an image shows its intended class.

Train and test come from independent sub-seeds of ``seed``, so the test images do not depend on
``n_train``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from saadi_core.data.dataset import Dataset, Split
from saadi_core.data.toy_draw import (
    arc_band_sdf,
    coverage,
    ellipse_sdf,
    local_coords,
    paint,
    polygon_sdf,
    smooth_noise,
    specular,
    tissue,
    to_uint8,
)

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.options import ToyClsOptions

CLASS_NAMES: list[str] = ["colon", "liver", "ovary", "oviduct", "uterus"]
CLASS_SHARES: np.ndarray = np.array([0.15, 0.12, 0.25, 0.08, 0.40])

#: Organ colours, shared by every class. Each keeps a clear distance from the tissue colour so
#: the organ stands out; none is specific to an organ.
PALETTE: np.ndarray = np.array(
    [
        [150, 45, 55],  # deep red
        [110, 60, 125],  # purple
        [160, 100, 45],  # tan
        [235, 215, 120],  # fat yellow
        [185, 70, 120],  # magenta
    ],
    dtype=np.float32,
)
TISSUE_RGB: np.ndarray = np.array([218, 145, 140], dtype=np.float32)

_MAX_PLACEMENT_TRIES = 30


def class_counts(n: int) -> np.ndarray:
    """Images per class for ``n`` images: the shares rounded by largest remainder (exact sum),
    with at least one image per class when ``n`` allows (a class without images would leave a
    generator condition without data)."""
    raw = CLASS_SHARES * n
    counts = np.floor(raw).astype(np.int64)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - int(counts.sum())]] += 1
    while n >= len(counts) and counts.min() == 0:
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return counts


# --------------------------------------------------------------------------- organ shapes
# Each returns (signed distance in px, a typical half-thickness in px used for shading and the
# highlight size). Sizes are fractions of the image size so every resolution looks the same,
# with a floor in pixels so that thin parts, holes and gaps survive a blur of about one pixel at
# small sizes (the floors only bind below ~60 px).
_MIN_BAND_PX = 3.6  # width of the oviduct band and of the colon ring
_MIN_HOLE_PX = 3.4  # radius of the colon's hole
_MIN_BLOB_PX = 3.6  # radius of an ovary disk
_MIN_GAP_PX = 3.5  # gap between the two ovary disks


@dataclass(frozen=True)
class ShapeSizes:
    """Size ranges of the organ shapes, as fractions of the image size (one set per version).

    Version 2 draws the same five shapes bolder (a thicker ring with a wider hole, larger ovary
    disks further apart, a wider oviduct band) so that the thin parts a tiny generator blurs away
    in version 1 become drawable: measured, version 1 leaves that generator at 15-25 % oracle pass
    (``docs/benchmarks.md``), below the "mostly plausible, a minority task-wrong" regime the method
    assumes."""

    colon_outer: tuple[float, float]
    colon_hole: tuple[float, float]
    ovary_radius: tuple[float, float]
    ovary_gap: tuple[float, float]
    oviduct_half_width: tuple[float, float]


SIZES: dict[int, ShapeSizes] = {
    1: ShapeSizes((0.20, 0.26), (0.5, 0.6), (0.08, 0.105), (0.06, 0.15), (0.03, 0.04)),
    2: ShapeSizes((0.24, 0.29), (0.45, 0.55), (0.11, 0.135), (0.10, 0.16), (0.055, 0.07)),
}


def _colon(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray, sizes: ShapeSizes
) -> tuple[np.ndarray, float]:
    outer = rng.uniform(*sizes.colon_outer) * size
    squash = rng.uniform(0.85, 1.0)
    inner = max(outer * rng.uniform(*sizes.colon_hole), _MIN_HOLE_PX)
    outer = max(outer, inner + _MIN_BAND_PX)
    sdf = np.maximum(
        ellipse_sdf(u, v, outer, outer * squash), -ellipse_sdf(u, v, inner, inner * squash)
    )
    return sdf, 0.5 * (outer - inner) * squash


def _liver(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray, sizes: ShapeSizes
) -> tuple[np.ndarray, float]:
    radius = rng.uniform(0.27, 0.33) * size
    angles = np.deg2rad(np.array([90.0, 210.0, 330.0]) + rng.uniform(-15, 15, 3))
    radii = radius * rng.uniform(0.9, 1.1, 3)
    vertices = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    return polygon_sdf(u, v, vertices), 0.45 * radius


def _ovary(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray, sizes: ShapeSizes
) -> tuple[np.ndarray, float]:
    r1, r2 = np.maximum(rng.uniform(*sizes.ovary_radius, 2) * size, _MIN_BLOB_PX)
    gap = max(rng.uniform(*sizes.ovary_gap) * size, _MIN_GAP_PX)
    half = 0.5 * (r1 + r2 + gap)
    squash = rng.uniform(0.8, 1.0, 2)
    sdf = np.minimum(
        ellipse_sdf(u + half, v, r1, r1 * squash[0]), ellipse_sdf(u - half, v, r2, r2 * squash[1])
    )
    return sdf, 0.45 * min(r1, r2)


def _oviduct(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray, sizes: ShapeSizes
) -> tuple[np.ndarray, float]:
    radius = rng.uniform(0.30, 0.55) * size
    length = rng.uniform(0.60, 0.80) * size
    half_width = max(rng.uniform(*sizes.oviduct_half_width) * size, _MIN_BAND_PX / 2)
    half_angle = min(0.5 * length / radius, 1.3)
    # shift so the arc's middle, not its centre of curvature, sits at the placement point
    return arc_band_sdf(
        u + radius * np.cos(half_angle / 2), v, radius, half_angle, half_width
    ), half_width


def _uterus(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray, sizes: ShapeSizes
) -> tuple[np.ndarray, float]:
    a = rng.uniform(0.22, 0.29) * size
    b = a * rng.uniform(0.6, 0.75)
    return ellipse_sdf(u, v, a, b), 0.5 * b


_SHAPES: list[
    Callable[
        [np.random.Generator, int, np.ndarray, np.ndarray, ShapeSizes], tuple[np.ndarray, float]
    ]
] = [
    _colon,
    _liver,
    _ovary,
    _oviduct,
    _uterus,
]


def _place(
    rng: np.random.Generator, size: int, label: int, sizes: ShapeSizes
) -> tuple[np.ndarray, float]:
    """Draw shape parameters and a pose until the organ lies fully inside the image (the oracle
    may then assume a ring's hole is closed and both ovary disks are visible)."""
    shape = _SHAPES[label]
    for _ in range(_MAX_PLACEMENT_TRIES):
        cx, cy = rng.uniform(0.3, 0.7, 2) * size
        u, v = local_coords(size, cx, cy, rng.uniform(0.0, 2 * np.pi))
        sdf, thickness = shape(rng, size, u, v, sizes)
        border = np.concatenate([sdf[0], sdf[-1], sdf[:, 0], sdf[:, -1]])
        if border.min() > 1.5:
            return sdf, thickness
    return sdf, thickness  # pragma: no cover - the size ranges above always fit within 30 tries


def draw_organ_images(
    labels: np.ndarray, image_size: int, rng: np.random.Generator, version: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image per label. Returns ``uint8 (N, S, S, 3)`` images and ``bool (N, S, S)``
    organ masks (the organ's true support; handy for tests and diagnostics)."""
    n = len(labels)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    organ = np.empty((n, image_size, image_size), dtype=bool)
    for i, label in enumerate(labels):
        base = TISSUE_RGB * rng.uniform(0.92, 1.08) + rng.uniform(-6, 6, 3)
        image = tissue(rng, image_size, base)
        sdf, thickness = _place(rng, image_size, int(label), SIZES[version])
        alpha = coverage(sdf)
        # a soft contact shadow makes the organ sit on the tissue
        image *= (1.0 - 0.08 * coverage(sdf - 2.0))[..., None]
        colour = PALETTE[rng.integers(len(PALETTE))] * rng.uniform(0.92, 1.08) + rng.uniform(
            -6, 6, 3
        )
        shade = 0.9 + 0.1 * np.clip(-sdf / max(thickness, 1.0), 0.0, 1.0)
        grain = 1.0 + 0.05 * smooth_noise(rng, image_size, max(image_size // 6, 4))[..., 0]
        layer = np.clip(colour[None, None, :] * (shade * grain)[..., None], 0, 255)
        sigma = float(np.clip(0.35 * thickness, 0.8, 2.5))
        specular(rng, layer, sdf < -0.5 * thickness, sigma, rng.uniform(0.7, 1.0))
        paint(image, layer, alpha)
        images[i] = to_uint8(image)
        organ[i] = alpha > 0.5
    return images, organ


def _split(
    seed_seq: np.random.SeedSequence, n: int, image_size: int, prefix: str, version: int
) -> Split:
    rng = np.random.default_rng(seed_seq)
    labels = np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int64), class_counts(n))
    rng.shuffle(labels)
    images, _ = draw_organ_images(labels, image_size, rng, version)
    return Split(images=images, labels=labels, ids=[f"{prefix}/{i:05d}" for i in range(n)])


def make_toy_cls(
    seed: int = 0, n_train: int = 500, n_test: int = 400, image_size: int = 64, version: int = 2
) -> Dataset:
    """The ``toy-cls`` dataset (deterministic for given arguments)."""
    from saadi_core.data.oracle_cls import ToyClsOracle

    train_seq, test_seq = np.random.SeedSequence([seed, 0xC15]).spawn(2)
    return Dataset(
        name="toy-cls",
        task="classification",
        class_names=list(CLASS_NAMES),
        train=_split(train_seq, n_train, image_size, "toy-cls/train", version),
        test=_split(test_seq, n_test, image_size, "toy-cls/test", version),
        oracle=ToyClsOracle(),
        source=f"embedded:toy-cls seed={seed}" + (f" version={version}" if version != 1 else ""),
        meta={
            "seed": seed,
            "version": version,
            "class_shares": dict(zip(CLASS_NAMES, CLASS_SHARES.tolist())),
        },
    )


def build(options: ToyClsOptions, context: object | None = None) -> Dataset:
    """Dataset builder registered as ``toy-cls`` (``context`` is accepted for the registry's
    ``cls(options, context)`` calling convention and unused)."""
    return make_toy_cls(
        options.seed, options.n_train, options.n_test, options.image_size, options.version
    )
