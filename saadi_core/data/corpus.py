"""The toy *pretraining* corpus: what web-scale data is to Stable Diffusion, for the tiny profile.

SAADi fine-tunes a generator that already knows how to draw (Stable Diffusion) on a few hundred
real surgical images. The tiny profile imitates that: its generators are pretrained once on this
corpus (``benchmarks/pretrain.py``; the weights ship inside the package) and then fine-tuned on the
small toy train split of a run. For that to mean anything the corpus must be *related but
different* — it teaches drawing (anti-aliased edges, shading, highlights, textures, thin bands,
hollow shapes, several blobs, wet-tissue backgrounds) but never the target classes drawn the same
way:

* other **shapes** — squares, stars, crosses, crescents, hexagons, capsules, dot triplets,
  chevrons, zig-zag bands, diamonds, hollow squares, half-disks (toy-cls draws rings, wedges,
  disk pairs, arcs and ellipses; none of those is a corpus class);
* other **palettes** — greens, blues, greys, oranges, whites, browns (toy-cls uses reds, purples,
  tan, fat yellow, magenta);
* other **backgrounds** — beige, grey-blue, olive, dark-red, sand and lilac "tissue" surfaces
  (toy-cls and toy-seg use pink/salmon tissue);
* other **class names** — the shape and material words below; the prompt template is
  ``"An image of {class}"`` (the targets' surgical templates are new words at fine-tuning).

Two views of one corpus, one per conditioning type:

* :func:`make_corpus_cls` — one shape per image, its class = the shape (for class-prompted
  generators such as ``ssd``). Colour is drawn from the shared corpus palette, independent of the
  class, so shape is what a prompt must render (as in toy-cls).
* :func:`make_corpus_seg` — a background and 2-4 regions per image, each region's class = a
  *material* (how the region looks: colour family, texture, shading, highlight), its outline a
  random shape (for mask-conditioned generators such as ``ssi``: fill a region with the prompted
  look). Class 0 is ``background``, as in every segmentation dataset of the toolkit.

Deterministic for given arguments; about 1 ms per 64 px image.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

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

#: prompt template the corpus is captioned with (the web-caption role)
CORPUS_PROMPT = "An image of {class}"

#: corpus version: bump when the drawing changes (recorded in the weights' metadata)
CORPUS_VERSION = 1

SHAPE_NAMES: list[str] = [
    "square",
    "star",
    "cross",
    "crescent",
    "hexagon",
    "capsule",
    "triplet",
    "chevron",
    "zigzag",
    "diamond",
    "frame",
    "halfdisk",
]

MATERIAL_NAMES: list[str] = [
    "background",
    "moss",
    "slate",
    "amber",
    "ink",
    "chalk",
    "rust",
    "jade",
    "steel",
]

#: object colours of the shape view (none is a toy-cls organ colour)
CORPUS_PALETTE: np.ndarray = np.array(
    [
        [60, 140, 70],  # leaf green
        [50, 90, 170],  # blue
        [120, 125, 130],  # grey
        [230, 140, 40],  # orange
        [240, 240, 235],  # white
        [110, 75, 45],  # brown
        [40, 160, 160],  # teal
        [20, 30, 60],  # navy
    ],
    dtype=np.float32,
)

#: background surfaces (none is the targets' pink/salmon tissue)
BACKGROUNDS: np.ndarray = np.array(
    [
        [215, 200, 165],  # beige
        [150, 165, 185],  # grey-blue
        [150, 150, 95],  # olive
        [120, 45, 45],  # dark red
        [225, 205, 150],  # sand
        [185, 165, 200],  # lilac
    ],
    dtype=np.float32,
)


# --------------------------------------------------------------------------- shapes (signed distances)
ShapeFn = Callable[[np.random.Generator, int, np.ndarray, np.ndarray], tuple[np.ndarray, float]]


def _regular_polygon(n: int, radius: float, phase: float = 0.0) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1).astype(np.float32)


def _square(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    r = rng.uniform(0.18, 0.26) * size
    return polygon_sdf(u, v, _regular_polygon(4, r, np.pi / 4)), 0.5 * r


def _star(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    # union of two triangles (a hexagram): convex pieces keep polygon_sdf exact inside
    r = rng.uniform(0.2, 0.28) * size
    sdf = np.minimum(
        polygon_sdf(u, v, _regular_polygon(3, r, np.pi / 2)),
        polygon_sdf(u, v, _regular_polygon(3, r, -np.pi / 2)),
    )
    return sdf, 0.3 * r


def _box(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    verts = np.array([[a, b], [-a, b], [-a, -b], [a, -b]], dtype=np.float32)
    return polygon_sdf(u, v, np.ascontiguousarray(verts))


def _cross(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    arm = rng.uniform(0.2, 0.27) * size
    half = max(rng.uniform(0.05, 0.075) * size, 2.0)
    return np.minimum(_box(u, v, arm, half), _box(u, v, half, arm)), half


def _crescent(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    r = rng.uniform(0.2, 0.26) * size
    shift = r * rng.uniform(0.45, 0.6)
    return np.maximum(
        ellipse_sdf(u, v, r, r), -ellipse_sdf(u - shift, v, r * 0.9, r * 0.9)
    ), 0.25 * r


def _hexagon(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    r = rng.uniform(0.18, 0.26) * size
    return polygon_sdf(u, v, _regular_polygon(6, r)), 0.5 * r


def _capsule(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    length = rng.uniform(0.18, 0.26) * size
    half = rng.uniform(0.07, 0.11) * size
    du = np.maximum(np.abs(u) - length, 0.0)
    return (np.sqrt(du**2 + v**2) - half).astype(np.float32), half


def _triplet(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    r = max(rng.uniform(0.06, 0.08) * size, 3.0)
    spread = rng.uniform(0.15, 0.2) * size
    centres = _regular_polygon(3, spread, rng.uniform(0, 2 * np.pi))
    sdf = np.min([ellipse_sdf(u - cx, v - cy, r, r) for cx, cy in centres], axis=0)
    return sdf, 0.45 * r


def _chevron(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    arm = rng.uniform(0.2, 0.28) * size
    half = max(rng.uniform(0.04, 0.06) * size, 1.8)
    open_ = rng.uniform(0.5, 0.8)
    points = np.array(
        [[-arm * open_, -arm], [arm * 0.3, 0.0], [-arm * open_, arm]], dtype=np.float32
    )
    return _band_local(u, v, points, half), half


def _band_local(u: np.ndarray, v: np.ndarray, points: np.ndarray, half: float) -> np.ndarray:
    """Distance band around a polyline given in the local ``(u, v)`` frame."""
    best = np.full(u.shape, np.inf, dtype=np.float32)
    for p, q in itertools.pairwise(points):
        e = q - p
        length2 = float(e @ e) or 1e-6
        t = np.clip(((u - p[0]) * e[0] + (v - p[1]) * e[1]) / length2, 0.0, 1.0)
        best = np.minimum(best, np.hypot(u - (p[0] + t * e[0]), v - (p[1] + t * e[1])))
    return best - np.float32(half)


def _zigzag(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    width = rng.uniform(0.25, 0.32) * size
    amp = rng.uniform(0.07, 0.11) * size
    n = int(rng.integers(3, 5))
    xs = np.linspace(-width, width, n + 1)
    ys = amp * np.where(np.arange(n + 1) % 2 == 0, 1.0, -1.0)
    half = max(rng.uniform(0.03, 0.045) * size, 1.8)
    return _band_local(u, v, np.stack([xs, ys], axis=1).astype(np.float32), half), half


def _diamond(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    a = rng.uniform(0.22, 0.3) * size
    b = a * rng.uniform(0.45, 0.6)
    verts = np.array([[a, 0], [0, b], [-a, 0], [0, -b]], dtype=np.float32)
    return polygon_sdf(u, v, verts), 0.4 * b


def _frame(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    outer = rng.uniform(0.2, 0.26) * size
    inner = max(outer * rng.uniform(0.5, 0.6), 3.4)
    return np.maximum(_box(u, v, outer, outer), -_box(u, v, inner, inner)), 0.5 * (outer - inner)


def _halfdisk(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    r = rng.uniform(0.22, 0.3) * size
    return np.maximum(ellipse_sdf(u, v, r, r), -v), 0.4 * r


def _arc(
    rng: np.random.Generator, size: int, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, float]:
    """A region outline only (segmentation view), never a shape class."""
    radius = rng.uniform(0.25, 0.45) * size
    half = max(rng.uniform(0.025, 0.05) * size, 1.5)
    return arc_band_sdf(u + radius * 0.9, v, radius, rng.uniform(0.5, 1.1), half), half


SHAPES: dict[str, ShapeFn] = {
    "square": _square,
    "star": _star,
    "cross": _cross,
    "crescent": _crescent,
    "hexagon": _hexagon,
    "capsule": _capsule,
    "triplet": _triplet,
    "chevron": _chevron,
    "zigzag": _zigzag,
    "diamond": _diamond,
    "frame": _frame,
    "halfdisk": _halfdisk,
}


def _place(
    rng: np.random.Generator,
    size: int,
    shape: ShapeFn,
    scale: float = 1.0,
    spread: tuple[float, float] = (0.3, 0.7),
) -> tuple[np.ndarray, float]:
    for _ in range(30):
        cx, cy = rng.uniform(*spread, 2) * size
        u, v = local_coords(size, cx, cy, rng.uniform(0.0, 2 * np.pi))
        sdf, thickness = shape(rng, size, u / scale, v / scale)
        sdf, thickness = sdf * scale, thickness * scale
        border = np.concatenate([sdf[0], sdf[-1], sdf[:, 0], sdf[:, -1]])
        if border.min() > 1.5:
            break
    return sdf, thickness


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = BACKGROUNDS[rng.integers(len(BACKGROUNDS))] * rng.uniform(0.9, 1.1) + rng.uniform(
        -8, 8, 3
    )
    return tissue(rng, size, base.astype(np.float32), vessels=int(rng.integers(0, 4)))


def _shaded_layer(
    rng: np.random.Generator,
    size: int,
    colour: np.ndarray,
    sdf: np.ndarray,
    thickness: float,
    grain: float,
) -> np.ndarray:
    shade = 0.85 + 0.15 * np.clip(-sdf / max(thickness, 1.0), 0.0, 1.0)
    noise = 1.0 + grain * smooth_noise(rng, size, max(size // 6, 4))[..., 0]
    return np.clip(colour[None, None, :] * (shade * noise)[..., None], 0, 255).astype(np.float32)


def draw_shape_images(labels: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """One image per label (an index into :data:`SHAPE_NAMES`): ``uint8 (N, S, S, 3)``."""
    images = np.empty((len(labels), image_size, image_size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        image = _background(rng, image_size)
        sdf, thickness = _place(rng, image_size, SHAPES[SHAPE_NAMES[int(label)]])
        image *= (1.0 - 0.1 * coverage(sdf - 2.0))[..., None]
        colour = CORPUS_PALETTE[rng.integers(len(CORPUS_PALETTE))] * rng.uniform(
            0.9, 1.1
        ) + rng.uniform(-8, 8, 3)
        layer = _shaded_layer(
            rng, image_size, colour.astype(np.float32), sdf, thickness, rng.uniform(0.02, 0.08)
        )
        if rng.random() < 0.6:
            specular(
                rng,
                layer,
                sdf < -0.5 * thickness,
                float(np.clip(0.35 * thickness, 0.8, 2.5)),
                rng.uniform(0.5, 1.0),
            )
        paint(image, layer, coverage(sdf))
        images[i] = to_uint8(image)
    return images


# --------------------------------------------------------------------------- materials (segmentation view)
def _material_layer(
    rng: np.random.Generator, size: int, material: str, sdf: np.ndarray, thickness: float
) -> np.ndarray:
    """How a region of ``material`` looks: a colour family and a texture of its own."""
    yy, xx = np.meshgrid(
        np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij"
    )
    jitter = rng.uniform(0.92, 1.08)
    if material == "moss":  # mottled green, coarse blotches
        base = np.array([70, 130, 60], np.float32) * jitter
        tex = 1.0 + 0.18 * smooth_noise(rng, size, max(size // 5, 6))[..., 0]
        return np.clip(
            base
            * tex[..., None]
            * (0.85 + 0.15 * np.clip(-sdf / max(thickness, 1), 0, 1))[..., None],
            0,
            255,
        )
    if material == "slate":  # dark grey with parallel stripes
        base = np.array([85, 90, 100], np.float32) * jitter
        a = rng.uniform(0, np.pi)
        stripes = 1.0 + 0.2 * np.sin((xx * np.cos(a) + yy * np.sin(a)) * rng.uniform(0.9, 1.3))
        return np.clip(base * stripes[..., None], 0, 255)
    if material == "amber":  # glossy orange, strong rim shading and a highlight
        layer = _shaded_layer(
            rng, size, np.array([215, 130, 30], np.float32) * jitter, sdf, thickness, 0.03
        )
        layer *= (0.75 + 0.25 * np.clip(-sdf / max(thickness, 1), 0, 1))[..., None]
        specular(rng, layer, sdf < -0.4 * thickness, float(np.clip(0.4 * thickness, 0.8, 2.5)), 1.0)
        return layer
    if material == "ink":  # very dark blue, flat
        return _shaded_layer(
            rng, size, np.array([25, 30, 80], np.float32) * jitter, sdf, thickness, 0.02
        )
    if material == "chalk":  # off-white with fine speckles
        base = np.array([230, 228, 220], np.float32) * jitter
        speck = 1.0 - 0.12 * (rng.random((size, size)) < 0.12)
        return np.clip(base * speck[..., None], 0, 255).astype(np.float32)
    if material == "rust":  # brown-orange with fine mottling
        base = np.array([150, 75, 35], np.float32) * jitter
        tex = 1.0 + 0.12 * smooth_noise(rng, size, max(size // 3, 8))[..., 0]
        return np.clip(base * tex[..., None], 0, 255)
    if material == "jade":  # teal with a smooth gradient across the region
        base = np.array([50, 165, 140], np.float32) * jitter
        a = rng.uniform(0, 2 * np.pi)
        grad = 1.0 + 0.15 * ((xx - size / 2) * np.cos(a) + (yy - size / 2) * np.sin(a)) / (size / 2)
        return np.clip(base * grad[..., None], 0, 255)
    if material == "steel":  # light blue-grey metal, bright streak along its length
        layer = _shaded_layer(
            rng, size, np.array([165, 175, 190], np.float32) * jitter, sdf, thickness, 0.02
        )
        layer *= (0.8 + 0.35 * np.exp(-((sdf + 0.5 * thickness) ** 2) / max(thickness, 1.0)))[
            ..., None
        ]
        return np.clip(layer, 0, 255)
    raise ValueError(material)  # pragma: no cover


_REGION_SHAPES: list[ShapeFn] = [*SHAPES.values(), _arc]


def draw_material_scenes(
    n: int, image_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes with 2-4 material regions each: ``uint8 (N, S, S, 3)`` images and ``int64
    (N, S, S)`` masks (ids index :data:`MATERIAL_NAMES`; later regions occlude earlier ones)."""
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    masks = np.zeros((n, image_size, image_size), dtype=np.int64)
    for i in range(n):
        image = _background(rng, image_size)
        count = int(rng.integers(2, 5))
        materials = rng.choice(np.arange(1, len(MATERIAL_NAMES)), size=count, replace=False)
        for m in materials:
            shape = _REGION_SHAPES[rng.integers(len(_REGION_SHAPES))]
            sdf, thickness = _place(
                rng, image_size, shape, scale=rng.uniform(0.6, 1.1), spread=(0.2, 0.8)
            )
            alpha = coverage(sdf)
            image *= (1.0 - 0.08 * coverage(sdf - 2.0))[..., None]
            paint(
                image,
                _material_layer(rng, image_size, MATERIAL_NAMES[int(m)], sdf, thickness),
                alpha,
            )
            masks[i][alpha > 0.5] = int(m)
        images[i] = to_uint8(image)
    return images, masks


# --------------------------------------------------------------------------- datasets
def make_corpus_cls(seed: int = 0, n: int = 6000, image_size: int = 64) -> Dataset:
    """The shape view: ``n`` images, classes balanced over :data:`SHAPE_NAMES`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0A5]))
    labels = np.resize(np.arange(len(SHAPE_NAMES), dtype=np.int64), n)
    rng.shuffle(labels)
    images = draw_shape_images(labels, image_size, rng)
    split = Split(images=images, labels=labels, ids=[f"corpus-cls/{i:05d}" for i in range(n)])
    empty = split.subset(np.arange(0))
    return Dataset(
        name="corpus-cls",
        task="classification",
        class_names=list(SHAPE_NAMES),
        train=split,
        test=empty,
        source=f"embedded:corpus-cls v{CORPUS_VERSION} seed={seed}",
        meta={"seed": seed, "version": CORPUS_VERSION},
    )


def make_corpus_seg(seed: int = 0, n: int = 4000, image_size: int = 64) -> Dataset:
    """The material view: ``n`` scenes of :func:`draw_material_scenes`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E6C]))
    images, masks = draw_material_scenes(n, image_size, rng)
    split = Split(images=images, masks=masks, ids=[f"corpus-seg/{i:05d}" for i in range(n)])
    empty = split.subset(np.arange(0))
    return Dataset(
        name="corpus-seg",
        task="segmentation",
        class_names=list(MATERIAL_NAMES),
        train=split,
        test=empty,
        source=f"embedded:corpus-seg v{CORPUS_VERSION} seed={seed}",
        meta={"seed": seed, "version": CORPUS_VERSION},
    )
