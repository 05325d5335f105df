"""``toy-seg`` version 1: an Endoscapes-like segmentation set drawn procedurally.

(The default is version 3, :mod:`saadi_core.data.toy_seg_v3`: every class has its colour and a
coarse structure with a random phase, so a mask-conditioned generator can get it wrong. This
first version is ``dataset: {kind: toy-seg, options: {version: 1}}``: every tiny generator passes
its oracle. Version 2, :mod:`saadi_core.data.toy_seg_v2`, tells classes apart by fine texture the
tiny generators cannot draw: they pass it 0–3 %.)

A laparoscopic cholecystectomy scene reduced to what matters for mask-conditioned generation:
tissue (background, id 0) with a **gallbladder** (a large, wobbly olive blob), the **cystic duct**
(a pale band leaving the gallbladder's neck), the **cystic artery** (a thin red curve beside the
duct, present in half of the images) and a **tool** (a shaded metal shaft entering from the image
border, present in most images). Pixel shares are deliberately unequal (tissue ≫ gallbladder ≫
tool > duct > artery), as in real surgical data.

Each class has its own colour range and texture, so the pixels under a mask determine the class:
:class:`~saadi_core.data.oracle_seg.ToySegOracle` checks whether an image realises its mask.
Masks are ``int64`` class ids, painted in the same order as the image (the tool occludes the
rest), so image and mask agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from saadi_core.data.dataset import Dataset, Split
from saadi_core.data.toy_draw import (
    coverage,
    local_coords,
    paint,
    polyline_band_sdf,
    smooth_noise,
    tissue,
    to_uint8,
)

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.options import ToySegOptions

CLASS_NAMES: list[str] = ["background", "gallbladder", "cystic_duct", "cystic_artery", "tool"]
BACKGROUND, GALLBLADDER, DUCT, ARTERY, TOOL = range(5)

TISSUE_RGB = np.array([200, 120, 105], dtype=np.float32)
GALLBLADDER_RGB = np.array([120, 150, 70], dtype=np.float32)
DUCT_RGB = np.array([232, 218, 178], dtype=np.float32)
ARTERY_RGB = np.array([160, 28, 40], dtype=np.float32)
TOOL_RGB = np.array([150, 152, 160], dtype=np.float32)

# Half-widths are fractions of the image size with a floor in pixels, so thin structures survive
# a blur of about one pixel at small sizes (the floors only bind below ~60 px).
_MIN_DUCT_PX = 1.8
_MIN_ARTERY_PX = 1.4
_MIN_TOOL_PX = 2.5

P_DUCT = 0.85
P_ARTERY = 0.5
P_TOOL = 0.7


def _jitter(
    rng: np.random.Generator, rgb: np.ndarray, gain: float = 0.08, offset: float = 6.0
) -> np.ndarray:
    return rgb * rng.uniform(1 - gain, 1 + gain) + rng.uniform(-offset, offset, 3).astype(
        np.float32
    )


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 8) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _curve(
    rng: np.random.Generator, start: np.ndarray, direction: float, length: float, bend: float
) -> np.ndarray:
    """A gently bent curve (quadratic Bézier) of about ``length`` px leaving ``start``."""
    d = np.array([np.cos(direction), np.sin(direction)])
    normal = np.array([-d[1], d[0]])
    end = start + length * d
    mid = 0.5 * (start + end) + rng.uniform(-bend, bend) * length * normal
    return _bezier(start, mid, end)


def _gallbladder(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Signed distance of the gallbladder, its neck point and the neck direction (towards the
    image centre, so duct and artery stay mostly in view)."""
    centre = rng.uniform(0.25, 0.75, 2) * size
    towards = np.array([size / 2, size / 2]) - centre
    base_angle = (
        np.arctan2(towards[1], towards[0])
        if np.hypot(*towards) > 0.05 * size
        else rng.uniform(0, 2 * np.pi)
    )
    angle = base_angle + rng.uniform(-0.9, 0.9)
    a = rng.uniform(0.22, 0.32) * size
    b = a * rng.uniform(0.55, 0.8)
    # the fundus (far end) sits away from the neck
    body = centre - 0.35 * a * np.array([np.cos(angle), np.sin(angle)])
    u, v = local_coords(size, body[0], body[1], angle)
    phi = np.arctan2(v / b, u / a)
    wobble = 1.0 + sum(
        rng.uniform(-0.06, 0.06) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)
    )
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    sdf = (rho - wobble) * b  # first-order distance, fine for anti-aliasing
    neck = body + 0.9 * a * np.array([np.cos(angle), np.sin(angle)])
    return sdf.astype(np.float32), neck, angle


def _tool(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance of a tool (shaft + two jaws) entering from a random border, and its
    shading (a metal cylinder: dark rims, one bright specular stripe)."""
    side = int(rng.integers(4))
    along = rng.uniform(0.15, 0.85) * size
    outside = -0.1 * size
    entry = {
        0: (along, outside),
        1: (size - outside, along),
        2: (along, size - outside),
        3: (outside, along),
    }[side]
    inward = {0: np.pi / 2, 1: np.pi, 2: -np.pi / 2, 3: 0.0}[side] + rng.uniform(-0.6, 0.6)
    reach = rng.uniform(0.4, 0.65) * size
    half_width = max(rng.uniform(0.06, 0.08) * size, _MIN_TOOL_PX)
    entry = np.array(entry, dtype=np.float64)
    d = np.array([np.cos(inward), np.sin(inward)])
    tip = entry + reach * d
    shaft = polyline_band_sdf(size, np.stack([entry, tip]), half_width)
    jaw_len = rng.uniform(0.09, 0.13) * size
    opening = rng.uniform(0.15, 0.45)
    jaws = [
        polyline_band_sdf(
            size,
            np.stack(
                [
                    tip,
                    tip
                    + jaw_len
                    * np.array([np.cos(inward + s * opening), np.sin(inward + s * opening)]),
                ]
            ),
            0.45 * half_width,
        )
        for s in (-1.0, 1.0)
    ]
    sdf = np.minimum(shaft, np.minimum(*jaws))
    _, v = local_coords(size, tip[0], tip[1], inward)
    across = np.clip(v / half_width, -1.5, 1.5)
    shade = (
        0.7
        + 0.25 * (1 - np.clip(across**2, 0, 1))
        + 0.35 * np.exp(-(((across + 0.35) / 0.25) ** 2))
    )
    return sdf, shade.astype(np.float32)


def draw_scenes(n: int, image_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` scenes: ``uint8 (n, S, S, 3)`` images and ``int64 (n, S, S)`` masks."""
    s = image_size
    images = np.empty((n, s, s, 3), dtype=np.uint8)
    masks = np.empty((n, s, s), dtype=np.int64)
    for i in range(n):
        image = tissue(rng, s, _jitter(rng, TISSUE_RGB), vessels=3)
        label = np.zeros((s, s), dtype=np.int64)

        sdf, neck, angle = _gallbladder(rng, s)
        alpha = coverage(sdf)
        image *= (1.0 - 0.08 * coverage(sdf - 2.0))[..., None]
        mottle = (
            1.0
            + 0.07 * smooth_noise(rng, s, max(s // 8, 4))[..., 0]
            + 0.03 * smooth_noise(rng, s, max(s // 3, 8))[..., 0]
        )
        rim = 0.85 + 0.15 * np.clip(-sdf / (0.1 * s), 0.0, 1.0)
        paint(
            image, _jitter(rng, GALLBLADDER_RGB)[None, None, :] * (mottle * rim)[..., None], alpha
        )
        label[sdf < 0] = GALLBLADDER

        if rng.random() < P_DUCT:
            half_width = max(rng.uniform(0.035, 0.045) * s, _MIN_DUCT_PX)
            path = _curve(
                rng, neck, angle + rng.uniform(-0.5, 0.5), rng.uniform(0.3, 0.45) * s, 0.25
            )
            sdf = polyline_band_sdf(s, path, half_width)
            shade = 0.85 + 0.15 * np.clip(-sdf / half_width, 0.0, 1.0)
            paint(
                image,
                _jitter(rng, DUCT_RGB, offset=4.0)[None, None, :] * shade[..., None],
                coverage(sdf),
            )
            label[sdf < 0] = DUCT

        if rng.random() < P_ARTERY:
            half_width = max(rng.uniform(0.025, 0.03) * s, _MIN_ARTERY_PX)
            side = rng.choice([-1.0, 1.0])
            start = neck + side * rng.uniform(0.08, 0.14) * s * np.array(
                [-np.sin(angle), np.cos(angle)]
            )
            path = _curve(
                rng, start, angle + side * rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.4) * s, 0.3
            )
            sdf = polyline_band_sdf(s, path, half_width)
            shade = 0.85 + 0.25 * np.clip(-sdf / half_width, 0.0, 1.0)
            paint(
                image,
                _jitter(rng, ARTERY_RGB, offset=4.0)[None, None, :] * shade[..., None],
                coverage(sdf),
            )
            label[sdf < 0] = ARTERY

        if rng.random() < P_TOOL:
            sdf, shade = _tool(rng, s)
            image *= (1.0 - 0.15 * coverage(sdf - 2.5))[..., None]
            layer = np.clip(
                _jitter(rng, TOOL_RGB, gain=0.06, offset=3.0)[None, None, :] * shade[..., None],
                0,
                255,
            )
            paint(image, layer, coverage(sdf))
            label[sdf < 0] = TOOL

        images[i] = to_uint8(image)
        masks[i] = label
    return images, masks


def scene_split(
    draw: Callable[[int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]],
    seed_seq: np.random.SeedSequence,
    n: int,
    image_size: int,
    prefix: str,
) -> Split:
    """``n`` scenes drawn by ``draw`` (version 1's or 2's ``draw_scenes``) as a split."""
    images, masks = draw(n, image_size, np.random.default_rng(seed_seq))
    return Split(images=images, masks=masks, ids=[f"{prefix}/{i:05d}" for i in range(n)])


def toy_seg_dataset(
    draw: Callable[[int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]],
    oracle: object,
    version: int,
    salt: int,
    seed: int,
    n_train: int,
    n_test: int,
    image_size: int,
    n_layouts: int = 0,
) -> Dataset:
    """A ``toy-seg`` version's dataset: train, test and (``n_layouts`` > 0) unseen-layout scenes
    drawn by ``draw`` from independent sub-seeds of ``(seed, salt)`` (each version its own salt,
    so versions never share scenes). The layouts are the third sub-seed, so adding them leaves
    train and test byte-identical."""
    train_seq, test_seq, layout_seq = np.random.SeedSequence([seed, salt]).spawn(3)
    tag = "" if version == 1 else f" version={version}"
    layouts = (
        scene_split(draw, layout_seq, n_layouts, image_size, "toy-seg/layouts")
        if n_layouts
        else None
    )
    return Dataset(
        name="toy-seg",
        task="segmentation",
        class_names=list(CLASS_NAMES),
        train=scene_split(draw, train_seq, n_train, image_size, "toy-seg/train"),
        test=scene_split(draw, test_seq, n_test, image_size, "toy-seg/test"),
        layouts=layouts,
        oracle=oracle,
        source=f"embedded:toy-seg{tag} seed={seed}",
        meta={"seed": seed} if version == 1 else {"seed": seed, "version": version},
    )


def make_toy_seg(
    seed: int = 0,
    n_train: int = 600,
    n_test: int = 200,
    image_size: int = 64,
    n_layouts: int = 0,
) -> Dataset:
    """The ``toy-seg`` dataset, version 1 (deterministic for given arguments)."""
    from saadi_core.data.oracle_seg import ToySegOracle

    return toy_seg_dataset(
        draw_scenes, ToySegOracle(), 1, 0x5E6, seed, n_train, n_test, image_size, n_layouts
    )


def build(options: ToySegOptions, context: object | None = None) -> Dataset:
    """Dataset builder registered as ``toy-seg`` (``context`` is accepted for the registry's
    ``cls(options, context)`` calling convention and unused): ``options.version`` 2 is
    :func:`saadi_core.data.toy_seg_v2.make_toy_seg_v2`, 3
    :func:`saadi_core.data.toy_seg_v3.make_toy_seg_v3`, 1 (default) this module's set."""
    args = (options.seed, options.n_train, options.n_test, options.image_size, options.n_layouts)
    if options.version == 2:
        from saadi_core.data.toy_seg_v2 import make_toy_seg_v2

        return make_toy_seg_v2(*args)
    if options.version == 3:
        from saadi_core.data.toy_seg_v3 import make_toy_seg_v3

        return make_toy_seg_v3(*args)
    return make_toy_seg(*args)
