"""``toy-seg`` version 3 and its coarse region oracle: determinism and the ``version`` option, an
oracle that passes real scenes (clean, noisy, blurred as a 4× latent upsampling blurs, at 32 px)
but fails flat regions — a class's average over its random phases — heavily blurred ones,
regions drawn with another class's look and wrong masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from saadi_core.data import toy_seg, toy_seg_v3
from saadi_core.data.oracle_seg_v3 import ToySegOracleV3
from saadi_core.data.toy_draw import degrade
from saadi_core.registry import Registry

N = 60


@pytest.fixture(scope="module")
def scenes() -> tuple[np.ndarray, np.ndarray]:
    return toy_seg_v3.draw_scenes(N, 64, np.random.default_rng(77))


@pytest.fixture(scope="module")
def oracle() -> ToySegOracleV3:
    return ToySegOracleV3()


def _flatten(images: np.ndarray, masks: np.ndarray, classes: range) -> np.ndarray:
    flat = images.astype(np.float32)
    for image, mask in zip(flat, masks):
        for k in classes:
            if (mask == k).any():
                image[mask == k] = image[mask == k].mean(axis=0)
    return flat.round().astype(np.uint8)


def test_v3_is_deterministic_seeded_and_reachable_by_option() -> None:
    a = toy_seg_v3.make_toy_seg_v3(seed=5, n_train=6, n_test=2)
    b = toy_seg_v3.make_toy_seg_v3(seed=5, n_train=6, n_test=2)
    c = toy_seg_v3.make_toy_seg_v3(seed=6, n_train=6, n_test=2)
    assert np.array_equal(a.train.images, b.train.images)
    assert np.array_equal(a.test.masks, b.test.masks)
    assert not np.array_equal(a.train.images, c.train.images)
    assert a.class_names == toy_seg.CLASS_NAMES and a.meta["version"] == 3
    built = Registry.discover(entry_points=False).create(
        "dataset", "toy-seg", {"n_train": 6, "n_test": 2, "seed": 5, "version": 3}
    )
    assert isinstance(built.oracle, ToySegOracleV3) and "version=3" in built.source
    assert np.array_equal(built.train.images, a.train.images)


def test_samples_of_one_class_differ_in_structure(scenes) -> None:
    """The random phase: two ducts of the same length are not the same picture."""
    images, masks = scenes
    share = np.bincount(masks.ravel(), minlength=5) / masks.size
    # the artery is as wide as the duct in version 3, still the smallest class
    assert 0.004 < share[toy_seg.ARTERY] < share[toy_seg.GALLBLADDER]
    lum = images.astype(np.float32).mean(axis=-1)
    spread = [lum[i][masks[i] == toy_seg.DUCT].std() for i in range(N) if (masks[i] == 2).any()]
    assert np.median(spread) > 12  # rings, not a flat band


def test_oracle_passes_real_scenes_clean_noisy_blurred_and_small(scenes, oracle) -> None:
    images, masks = scenes
    assert oracle.check(images, masks=masks).mean() >= 0.97
    rng = np.random.default_rng(0)
    assert oracle.check(degrade(images, rng, 0.0, 6.0), masks=masks).mean() >= 0.95
    assert oracle.check(degrade(images, rng, 1.5, 0.0), masks=masks).mean() >= 0.9
    # what a 2x coarser latent grid keeps: average-pool, then bilinear upsampling
    pooled = images.astype(np.float32).reshape(N, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    up = np.clip(ndimage.zoom(pooled, (1, 2, 2, 1), order=1).round(), 0, 255).astype(np.uint8)
    assert oracle.check(up, masks=masks).mean() >= 0.9
    small, small_masks = toy_seg_v3.draw_scenes(20, 32, np.random.default_rng(1))
    assert oracle.check(small, masks=small_masks).mean() >= 0.9


@pytest.mark.parametrize(
    "classes", [range(1, 2), range(2, 3), range(3, 4), range(4, 5), range(0, 1)]
)
def test_oracle_fails_a_flat_region_of_the_right_colour(scenes, oracle, classes) -> None:
    images, masks = scenes
    has = np.array([(m == classes[0]).sum() >= 0.002 * m.size for m in masks])
    flat = _flatten(images[has], masks[has], classes)
    assert oracle.check(flat, masks=masks[has]).mean() <= 0.02


def test_oracle_fails_heavy_blur_wrong_masks_and_noise(scenes, oracle) -> None:
    images, masks = scenes
    blurred = degrade(images, np.random.default_rng(0), blur_sigma=4.0, noise_std=0.0)
    assert oracle.check(blurred, masks=masks).mean() <= 0.2  # only broad highlights survive
    assert oracle.check(images, masks=masks[np.roll(np.arange(N), 1)]).mean() <= 0.05
    noise = np.random.default_rng(3).integers(0, 256, (10, 64, 64, 3)).astype(np.uint8)
    assert not oracle.check(noise, masks=masks[:10]).any()


@pytest.mark.parametrize(
    "swap", [{1: 2}, {2: 3}, {3: 2}, {4: 1}, {1: 4}, {2: 1}, {3: 4}, {4: 3}, {2: 4}, {4: 2}]
)
def test_oracle_fails_regions_with_another_class_look(swap, oracle) -> None:
    (cls,) = swap
    images, masks = toy_seg_v3.draw_scenes(30, 64, np.random.default_rng(9), looks=swap)
    has = (masks == cls).any(axis=(1, 2))
    assert has.sum() >= 8
    assert oracle.check(images[has], masks=masks[has]).mean() <= 0.05
