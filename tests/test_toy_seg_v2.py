"""``toy-seg`` version 2 (opt-in) and its region-appearance oracle: determinism, the
``version`` option, varied backgrounds, and an oracle that passes real scenes but fails regions
drawn with another class's look, flattened or blurred regions and wrong masks."""

from __future__ import annotations

import numpy as np
import pytest

from saadi_core.data import toy_seg, toy_seg_v2
from saadi_core.data.oracle_seg_v2 import ToySegOracleV2
from saadi_core.data.toy_draw import degrade
from saadi_core.errors import ConfigError
from saadi_core.registry import Registry

N = 60


@pytest.fixture(scope="module")
def scenes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return toy_seg_v2.draw_scenes_with_kinds(N, 64, np.random.default_rng(77))


@pytest.fixture(scope="module")
def oracle() -> ToySegOracleV2:
    return ToySegOracleV2()


def test_v2_is_deterministic_and_seeded() -> None:
    a = toy_seg_v2.make_toy_seg_v2(seed=5, n_train=10, n_test=4)
    b = toy_seg_v2.make_toy_seg_v2(seed=5, n_train=10, n_test=4)
    c = toy_seg_v2.make_toy_seg_v2(seed=6, n_train=10, n_test=4)
    assert np.array_equal(a.train.images, b.train.images) and np.array_equal(
        a.test.masks, b.test.masks
    )
    assert not np.array_equal(a.train.images, c.train.images)
    assert a.class_names == toy_seg.CLASS_NAMES and a.meta["version"] == 2


def test_version_option_defaults_to_v3_and_keeps_v1_and_v2_reachable() -> None:
    from saadi_core.data.toy_seg_v3 import make_toy_seg_v3

    registry = Registry.discover(entry_points=False)
    new = registry.create("dataset", "toy-seg", {"n_train": 4, "n_test": 2, "version": 2})
    assert "version=2" in new.source and isinstance(new.oracle, ToySegOracleV2)
    v2 = toy_seg_v2.make_toy_seg_v2(seed=0, n_train=4, n_test=2)
    assert np.array_equal(new.train.images, v2.train.images)
    old = registry.create("dataset", "toy-seg", {"n_train": 4, "n_test": 2, "version": 1})
    v1 = toy_seg.make_toy_seg(seed=0, n_train=4, n_test=2)
    assert np.array_equal(old.train.images, v1.train.images) and np.array_equal(
        old.test.masks, v1.test.masks
    )
    default = registry.create("dataset", "toy-seg", {"n_train": 4, "n_test": 2})
    assert np.array_equal(default.train.images, make_toy_seg_v3(0, 4, 2).train.images)
    with pytest.raises(ConfigError, match="version"):
        registry.create("dataset", "toy-seg", {"version": 4})


def test_backgrounds_and_lighting_vary_and_thin_classes_exist(scenes) -> None:
    images, masks, kinds = scenes
    assert set(kinds) == set(range(len(toy_seg_v2.BACKGROUND_KINDS)))
    tissue = np.array([im[m == 0].mean() for im, m in zip(images, masks)])
    assert tissue.std() > 10  # brightness differs from scene to scene (tissue kind and lighting)
    share = np.bincount(masks.ravel(), minlength=5) / masks.size
    assert 0.002 < share[toy_seg.ARTERY] < share[toy_seg.DUCT] < share[toy_seg.GALLBLADDER]


def test_oracle_passes_real_scenes_clean_and_noisy(scenes, oracle) -> None:
    images, masks, _ = scenes
    assert oracle.check(images, masks=masks).mean() >= 0.95
    noisy = degrade(images, np.random.default_rng(0), blur_sigma=0.0, noise_std=6.0)
    assert oracle.check(noisy, masks=masks).mean() >= 0.9
    # another size (the tiny test profile draws 32 px scenes)
    small, small_masks = toy_seg_v2.draw_scenes(20, 32, np.random.default_rng(1))
    assert oracle.check(small, masks=small_masks).mean() >= 0.9


@pytest.mark.parametrize("swap", [{1: 2}, {2: 3}, {3: 2}, {4: 1}, {1: 4}, {2: 1}])
def test_oracle_fails_regions_with_another_class_look(swap, oracle) -> None:
    (cls,) = swap
    images, masks = toy_seg_v2.draw_scenes(40, 64, np.random.default_rng(9), looks=swap)
    has = (masks == cls).any(axis=(1, 2))
    assert has.sum() >= 10
    assert oracle.check(images[has], masks=masks[has]).mean() <= 0.05


def test_oracle_fails_flat_or_blurred_regions_and_wrong_masks(scenes, oracle) -> None:
    images, masks, _ = scenes
    flat = images.astype(np.float32)
    for image, mask in zip(flat, masks):
        for k in range(1, 5):
            if (mask == k).any():
                image[mask == k] = image[mask == k].mean(axis=0)
    assert oracle.check(flat.round().astype(np.uint8), masks=masks).mean() <= 0.02
    blurred = degrade(images, np.random.default_rng(0), blur_sigma=1.5, noise_std=0.0)
    assert oracle.check(blurred, masks=masks).mean() <= 0.05
    assert oracle.check(images, masks=masks[np.roll(np.arange(N), 1)]).mean() <= 0.05
    noise = np.random.default_rng(3).integers(0, 256, (10, 64, 64, 3)).astype(np.uint8)
    assert not oracle.check(noise, masks=masks[:10]).any()


def test_oracle_reports_regions_and_checks_inputs(scenes, oracle) -> None:
    images, masks, _ = scenes
    verdicts = oracle.region_verdicts(images[0], masks[0])
    assert {v["class"] for v in verdicts} == set(np.unique(masks[0]).tolist())
    assert all(v["pass"] and v["looks_like"] == v["class"] for v in verdicts)
    with pytest.raises(ValueError, match="masks"):
        oracle.check(images[:1])
    with pytest.raises(ValueError, match="shape"):
        oracle.check(images[:2], masks=np.zeros((2, 32, 32), np.int64))
    with pytest.raises(ValueError, match="uint8"):
        oracle.check(images[:1].astype(np.float32), masks=masks[:1])
