"""Embedded toy datasets and their oracles: determinism, imbalance, colour-blindness of the class
rule, oracle accuracy (clean and degraded), rejection of wrong conditions and garbage."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from saadi_core.data import toy_cls, toy_seg
from saadi_core.data.oracle_cls import UNKNOWN, ToyClsOracle
from saadi_core.data.oracle_seg import ToySegOracle
from saadi_core.data.toy_draw import degrade, tissue, to_uint8
from saadi_core.errors import ConfigError
from saadi_core.registry import Registry


@pytest.fixture(scope="module", params=[1, 2], ids=["v1", "v2"])
def cls_images(request) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """40 images per class (balanced, so per-class failures show), with the organ masks, for each
    toy-cls version (the oracle must judge both)."""
    labels = np.repeat(np.arange(5), 40)
    images, organ = toy_cls.draw_organ_images(
        labels, 64, np.random.default_rng(123), version=request.param
    )
    return images, labels, organ


@pytest.fixture(scope="module")
def seg_scenes() -> tuple[np.ndarray, np.ndarray]:
    return toy_seg.draw_scenes(150, 64, np.random.default_rng(321))


@pytest.fixture(scope="module")
def cls_oracle() -> ToyClsOracle:
    return ToyClsOracle()


@pytest.fixture(scope="module")
def seg_oracle() -> ToySegOracle:
    return ToySegOracle()


# --------------------------------------------------------------------------- toy-cls


def test_toy_cls_is_deterministic_and_seeded() -> None:
    a = toy_cls.make_toy_cls(seed=3, n_train=30, n_test=20)
    b = toy_cls.make_toy_cls(seed=3, n_train=30, n_test=20)
    c = toy_cls.make_toy_cls(seed=4, n_train=30, n_test=20)
    assert np.array_equal(a.train.images, b.train.images) and np.array_equal(
        a.train.labels, b.train.labels
    )
    assert np.array_equal(a.test.images, b.test.images)
    assert not np.array_equal(a.train.images, c.train.images)
    # train and test come from different sub-seeds: no test image repeats a training image
    assert not any(np.array_equal(t, x) for t in a.test.images for x in a.train.images)
    # the test split does not depend on how many training images were asked for
    d = toy_cls.make_toy_cls(seed=3, n_train=45, n_test=20)
    assert np.array_equal(a.test.images, d.test.images)


def test_toy_cls_shapes_names_and_imbalance() -> None:
    ds = toy_cls.make_toy_cls(seed=0, n_train=100, n_test=25, image_size=48)
    assert ds.task == "classification" and ds.class_names == [
        "colon",
        "liver",
        "ovary",
        "oviduct",
        "uterus",
    ]
    assert ds.train.images.shape == (100, 48, 48, 3) and ds.train.images.dtype == np.uint8
    assert ds.train.labels.dtype == np.int64 and len(ds.train.ids) == 100
    assert ds.image_size == 48 and ds.oracle is not None and "seed=0" in ds.source
    counts = toy_cls.class_counts(1000)
    assert counts.tolist() == [150, 120, 250, 80, 400] and counts.sum() == 1000
    assert toy_cls.class_counts(37).sum() == 37
    assert (
        toy_cls.class_counts(5).tolist() == [1, 1, 1, 1, 1] and toy_cls.class_counts(8).min() == 1
    )
    assert ds.class_counts("train") == dict(zip(ds.class_names, toy_cls.class_counts(100).tolist()))
    assert max(counts) / min(counts) >= 4


def test_organ_colour_does_not_identify_the_class(cls_images) -> None:
    """A nearest-mean-colour classifier on the organ's own pixels is at chance: shape decides."""
    images, labels, organ = cls_images
    colour = np.array([img[m].mean(axis=0) for img, m in zip(images, organ)])
    train, test = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
    means = np.stack([colour[train & (labels == k)].mean(axis=0) for k in range(5)])
    predicted = np.argmin(((colour[test][:, None] - means[None]) ** 2).sum(-1), axis=1)
    balanced = np.mean([np.mean(predicted[labels[test] == k] == k) for k in range(5)])
    assert balanced < 0.4, balanced  # chance is 0.2


def test_cls_oracle_accuracy_clean_and_degraded(cls_images, cls_oracle) -> None:
    images, labels, _ = cls_images
    assert np.mean(cls_oracle.predict(images) == labels) >= 0.97
    degraded = degrade(images, np.random.default_rng(0), blur_sigma=1.0, noise_std=8.0)
    assert np.mean(cls_oracle.check(degraded, labels)) >= 0.95
    per_class = [np.mean(cls_oracle.predict(degraded[labels == k]) == k) for k in range(5)]
    assert min(per_class) >= 0.9, per_class


@pytest.mark.parametrize("version", [1, 2])
def test_cls_oracle_on_the_toy_test_split(cls_oracle, version) -> None:
    ds = toy_cls.make_toy_cls(seed=1, n_train=5, n_test=400, version=version)
    assert np.mean(cls_oracle.check(ds.test.images, ds.test.labels)) >= 0.95


def test_toy_cls_version_2_is_the_bolder_default_and_version_1_stays_reachable() -> None:
    """Version 2 draws the thin parts thicker (what a tiny generator can draw); version 1 is
    unchanged and still selected by name through the registry."""
    from saadi_core.data.options import ToyClsOptions

    assert ToyClsOptions().version == 2
    v1 = toy_cls.make_toy_cls(seed=5, n_train=30, n_test=5, version=1)
    v2 = toy_cls.make_toy_cls(seed=5, n_train=30, n_test=5)
    assert "version=2" in v2.source and "version" not in v1.source
    assert not np.array_equal(v1.train.images, v2.train.images)
    assert np.array_equal(v1.train.labels, v2.train.labels)  # same classes, drawn differently
    built = toy_cls.build(ToyClsOptions(version=1, seed=5, n_train=30, n_test=5))
    assert np.array_equal(built.train.images, v1.train.images)
    old, new = toy_cls.SIZES[1], toy_cls.SIZES[2]
    assert new.oviduct_half_width[0] > old.oviduct_half_width[1]
    assert new.ovary_radius[0] > old.ovary_radius[1]


def test_cls_oracle_rejects_wrong_classes(cls_images, cls_oracle) -> None:
    images, labels, _ = cls_images
    wrong = (labels + np.random.default_rng(1).integers(1, 5, len(labels))) % 5
    assert np.mean(cls_oracle.check(images, wrong)) <= 0.02


def test_cls_oracle_rejects_garbage(cls_oracle) -> None:
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (20, 64, 64, 3)).astype(np.uint8)
    blank = np.full((5, 64, 64, 3), toy_cls.TISSUE_RGB.astype(np.uint8))
    tissue_only = np.stack([to_uint8(tissue(rng, 64, toy_cls.TISSUE_RGB)) for _ in range(10)])
    for garbage in (noise, blank, tissue_only):
        assert np.all(cls_oracle.predict(garbage) == UNKNOWN)
        assert not cls_oracle.check(garbage, np.zeros(len(garbage), dtype=np.int64)).any()


@pytest.mark.parametrize("version", [1, 2])
def test_cls_oracle_works_at_other_sizes(cls_oracle, version) -> None:
    labels = np.repeat(np.arange(5), 10)
    for size in (32, 96):
        images, _ = toy_cls.draw_organ_images(
            labels, size, np.random.default_rng(size), version=version
        )
        assert np.mean(cls_oracle.check(images, labels)) >= 0.95
        assert np.mean(cls_oracle.check(degrade(images, np.random.default_rng(0)), labels)) >= 0.9


def test_cls_oracle_input_contract(cls_oracle) -> None:
    with pytest.raises(ValueError, match="labels"):
        cls_oracle.check(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        cls_oracle.predict(np.zeros((1, 64, 64, 3), np.float32))


# --------------------------------------------------------------------------- toy-seg


def test_toy_seg_is_deterministic_and_seeded() -> None:
    a = toy_seg.make_toy_seg(seed=5, n_train=12, n_test=6)
    b = toy_seg.make_toy_seg(seed=5, n_train=12, n_test=6)
    c = toy_seg.make_toy_seg(seed=6, n_train=12, n_test=6)
    assert np.array_equal(a.train.images, b.train.images) and np.array_equal(
        a.train.masks, b.train.masks
    )
    assert np.array_equal(a.test.masks, b.test.masks)
    assert not np.array_equal(a.train.masks, c.train.masks)
    assert not any(np.array_equal(t, x) for t in a.test.masks for x in a.train.masks)


def test_toy_seg_masks_and_class_imbalance(seg_scenes) -> None:
    images, masks = seg_scenes
    assert images.dtype == np.uint8 and images.shape == (150, 64, 64, 3)
    assert masks.dtype == np.int64 and masks.shape == (150, 64, 64)
    assert set(np.unique(masks)) == set(range(len(toy_seg.CLASS_NAMES)))
    share = np.bincount(masks.ravel(), minlength=5) / masks.size
    bg, gb, duct, artery, tool = share
    assert bg > 0.6 and bg > gb > tool > duct > artery > 0.002, share
    presence = np.mean([(masks == k).any(axis=(1, 2)) for k in range(5)], axis=1)
    assert presence[toy_seg.ARTERY] < 0.7 and presence[toy_seg.GALLBLADDER] == 1.0


def test_toy_seg_dataset_record() -> None:
    ds = toy_seg.make_toy_seg(seed=0, n_train=8, n_test=4, image_size=48)
    assert ds.task == "segmentation" and ds.class_names[0] == "background"
    assert ds.train.masks.shape == (8, 48, 48) and ds.test.images.shape == (4, 48, 48, 3)
    assert ds.train.labels is None and ds.oracle is not None


def test_seg_oracle_accuracy_clean_and_degraded(seg_scenes, seg_oracle) -> None:
    images, masks = seg_scenes
    assert np.mean(seg_oracle.check(images, masks=masks)) >= 0.97
    degraded = degrade(images, np.random.default_rng(0), blur_sigma=1.0, noise_std=8.0)
    assert np.mean(seg_oracle.check(degraded, masks=masks)) >= 0.95
    assert np.median(seg_oracle.dice(degraded, masks)) > 0.85


def test_seg_oracle_rejects_wrong_masks(seg_scenes, seg_oracle) -> None:
    images, masks = seg_scenes
    other = masks[np.roll(np.arange(len(masks)), 1)]
    assert np.mean(seg_oracle.check(images, masks=other)) <= 0.02
    # the right layout with two classes swapped is also wrong
    both = (masks == toy_seg.DUCT).any(axis=(1, 2)) & (masks == toy_seg.ARTERY).any(axis=(1, 2))
    swapped = np.array([0, 1, 3, 2, 4])[masks[both]]
    assert np.mean(seg_oracle.check(images[both], masks=swapped)) <= 0.05


def test_seg_oracle_rejects_garbage(seg_scenes, seg_oracle) -> None:
    _, masks = seg_scenes
    noise = np.random.default_rng(3).integers(0, 256, (30, 64, 64, 3)).astype(np.uint8)
    blank = np.full((30, 64, 64, 3), toy_seg.TISSUE_RGB.astype(np.uint8))
    assert not seg_oracle.check(noise, masks=masks[:30]).any()
    assert not seg_oracle.check(blank, masks=masks[:30]).any()
    # an empty intended mask is realised by plain tissue
    assert seg_oracle.check(blank[:2], masks=np.zeros((2, 64, 64), np.int64)).all()


def test_seg_oracle_works_at_other_sizes(seg_oracle) -> None:
    for size in (32, 96):
        images, masks = toy_seg.draw_scenes(30, size, np.random.default_rng(size))
        assert np.mean(seg_oracle.check(images, masks=masks)) >= 0.95
        assert (
            np.mean(seg_oracle.check(degrade(images, np.random.default_rng(0)), masks=masks)) >= 0.9
        )
        assert np.mean(seg_oracle.check(images, masks=masks[np.roll(np.arange(30), 1)])) <= 0.05


def test_seg_oracle_on_the_toy_test_split(seg_oracle) -> None:
    ds = toy_seg.make_toy_seg(seed=1, n_train=1, n_test=200)
    assert np.mean(seg_oracle.check(ds.test.images, masks=ds.test.masks)) >= 0.95


def test_seg_oracle_input_contract(seg_oracle) -> None:
    with pytest.raises(ValueError, match="masks"):
        seg_oracle.check(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        seg_oracle.check(np.zeros((2, 64, 64, 3), np.uint8), masks=np.zeros((2, 32, 32), np.int64))


# --------------------------------------------------------------------------- registration


def test_builtin_registration_builds_datasets() -> None:
    registry = Registry.discover(entry_points=False)
    assert {"toy-cls", "toy-seg", "folder-cls", "folder-seg"} <= set(registry.kinds("dataset"))
    entry = registry.get("dataset", "toy-cls")
    assert entry.plugin == "saadi-core" and entry.description
    ds = registry.create("dataset", "toy-cls", {"n_train": 10, "n_test": 5, "seed": 2})
    assert len(ds.train) == 10 and len(ds.test) == 5
    ds = registry.create("dataset", "toy-seg", {"n_train": 3, "n_test": 2})
    assert ds.train.masks.shape == (3, 64, 64)
    with pytest.raises(ConfigError, match="n_trian"):
        registry.create("dataset", "toy-cls", {"n_trian": 10})
    with pytest.raises(ConfigError, match="root"):
        registry.create("dataset", "folder-cls", {})


def test_dataset_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from saadi_core.registry import Registry\n"
        "r = Registry.discover(entry_points=False)\n"
        "d = r.create('dataset', 'toy-cls', {'n_train': 5, 'n_test': 5})\n"
        "d = r.create('dataset', 'toy-seg', {'n_train': 1, 'n_test': 1})\n"
        "import saadi_core.data.folders, saadi_core.data.check\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
