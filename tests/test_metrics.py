"""Fidelity metrics (saadi_metrics plugin + saadi_core.evaluation.fidelity) against known cases."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from saadi_metrics.distribution import fid_from_features, kid_from_features
from saadi_metrics.memorisation import Memorisation
from saadi_metrics.options import MemorisationOptions, MSSSIMOptions, RegionOptions
from saadi_metrics.regions import RegionFIDKID, bounding_box, class_crops
from saadi_metrics.similarity import MSSSIM, ms_ssim_betas, ms_ssim_per_image, psnr

from saadi_core.data.dataset import Dataset, Split
from saadi_core.errors import ConfigError, DataError
from saadi_core.evaluation.fidelity import (
    FidelityInputs,
    compute_fidelity,
    inception_features,
    json_safe,
    selector_features,
)
from saadi_core.registry import Registry

ALL_KINDS = ["fid", "kid", "memorisation", "ms-ssim", "psnr", "region-fid-kid"]


class PooledStats:
    """Tiny deterministic extractor: 2×2 average pooling per channel (12 values) + per-channel
    std (3). A constant shift ``s`` of every pixel moves the 12 means by ``s`` and leaves the
    rest unchanged, so FID between a set and its shifted copy is exactly ``12·s²``."""

    name = "pooled-stats"
    label = "test features: 2×2 average pooling + per-channel std (15-d)"

    def __init__(self) -> None:
        self.images_seen = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(images)
        x = images.double()
        return torch.cat([F.adaptive_avg_pool2d(x, 2).flatten(1), x.flatten(2).std(dim=2)], dim=1)


def textures(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [-0.4, 0.4] (room for shifts without leaving [-1, 1])."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 6, 6, generator=g) - 0.5
    return F.interpolate(low, size=size, mode="bilinear", align_corners=False) * 0.8


def box_masks(n: int, size: int = 32) -> torch.Tensor:
    """Class 1 box in every image, class 2 box in the even ones, background 0 elsewhere."""
    masks = torch.zeros(n, size, size, dtype=torch.long)
    masks[:, 4:14, 6:20] = 1
    masks[::2, 20:28, 2:12] = 2
    return masks


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["metrics"])


# --------------------------------------------------------------------------- FID / KID


def test_fid_and_kid_of_identical_sets_are_near_zero():
    features = PooledStats()(textures(64))
    assert fid_from_features(features, features.clone()) == pytest.approx(0.0, abs=1e-9)
    kid_same, _, _ = kid_from_features(features, features.clone(), subsets=20, subset_size=1000)
    kid_shifted, _, _ = kid_from_features(
        features, PooledStats()(textures(64) + 0.1), subsets=20, subset_size=1000
    )
    assert abs(kid_same) < 0.05 * kid_shifted


def test_fid_grows_with_the_shift_exactly_as_the_mean_term_predicts():
    real = textures(64)
    extractor = PooledStats()
    fids, kids = [], []
    for shift in (0.05, 0.1, 0.2, 0.4):
        fid = fid_from_features(extractor(real), extractor(real + shift))
        assert fid == pytest.approx(
            12 * shift**2, rel=1e-5
        )  # covariances equal: only ‖Δμ‖² remains
        fids.append(fid)
        kids.append(
            kid_from_features(
                extractor(real), extractor(real + shift), subsets=10, subset_size=1000
            )[0]
        )
    assert fids == sorted(fids) and kids == sorted(kids) and kids[0] > 0


def test_kid_subsets_are_capped_at_half_the_smaller_set_so_std_is_informative():
    a, b = PooledStats()(textures(40, seed=1)), PooledStats()(textures(30, seed=2))
    mean, std, size = kid_from_features(a, b, subsets=10, subset_size=1000, seed=3)
    assert size == 15 and std > 0
    assert kid_from_features(a, b, subsets=10, subset_size=1000, seed=3)[:2] == (
        mean,
        std,
    )  # seeded


def test_whole_set_mmd_matches_the_unbiased_estimator_written_out():
    from saadi_metrics.distribution import polynomial_mmd

    rng = np.random.default_rng(0)
    real, synthetic = rng.normal(size=(30, 4)), rng.normal(size=(20, 4)) + 0.5

    def kernel(x, y):
        return (x @ y.T / 4 + 1.0) ** 3

    k_rr, k_ss = kernel(real, real), kernel(synthetic, synthetic)
    expected = (
        (k_rr.sum() - np.trace(k_rr)) / (30 * 29)
        + (k_ss.sum() - np.trace(k_ss)) / (20 * 19)
        - 2 * kernel(real, synthetic).mean()
    )
    assert polynomial_mmd(real, synthetic) == pytest.approx(expected, rel=1e-12)


def test_the_bootstrap_fid_equals_torchmetrics_fid():
    from saadi_metrics.distribution import _Frechet

    rng = np.random.default_rng(0)
    real = rng.normal(size=(80, 6)) @ rng.normal(size=(6, 6))
    synthetic = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6)) + 0.3
    expected = fid_from_features(torch.from_numpy(real), torch.from_numpy(synthetic))
    assert _Frechet(real).distance(synthetic) == pytest.approx(expected, rel=1e-8)
    assert _Frechet(real).distance(real) == pytest.approx(0.0, abs=1e-8)
    # fewer samples than feature dimensions: the n x n form gives the same value
    real = rng.normal(size=(60, 12)) @ rng.normal(size=(12, 12))
    few = rng.normal(size=(7, 12)) @ rng.normal(size=(12, 12)) - 0.2
    expected = fid_from_features(torch.from_numpy(real), torch.from_numpy(few))
    assert _Frechet(real).distance(few) == pytest.approx(expected, rel=1e-8)


def test_fid_and_kid_compare_base_and_aligned_with_paired_intervals(registry: Registry):
    """Aligned samples shifted away from the real images: FID and whole-set KID rise with an
    interval above 0 ('worse' — lower is better); an identical aligned set is no change."""
    from saadi_core.evaluation.fidelity import compare_fidelity

    real, base_images = textures(60, seed=1), textures(60, seed=2)
    groups = np.repeat(np.arange(12), 5)
    features = PooledStats()

    def inputs(images):
        return FidelityInputs(real=real, synthetic=images, class_names=["a"], features=features)

    options = {"fid": {"compare_resamples": 50}, "kid": {"compare_resamples": 50}}
    shifted = compare_fidelity(
        registry,
        inputs(base_images),
        inputs(base_images + 0.15),
        groups,
        ["fid", "kid"],
        options=options,
    )
    fid, kid = shifted["comparison"]["fid"], shifted["comparison"]["kid_whole_set"]
    assert fid["base"] == pytest.approx(fid_from_features(features(real), features(base_images)))
    assert (
        fid["difference"] > 0
        and fid["ci95"][0] > 0
        and fid["verdict"] == "worse than base (95 % CI above 0)"
    )
    assert (
        kid["difference"] > 0
        and kid["ci95"][0] > 0
        and "resampling the 12 conditions" in kid["method"]
    )
    same = compare_fidelity(
        registry,
        inputs(base_images),
        inputs(base_images.clone()),
        groups,
        ["fid", "kid"],
        options=options,
    )
    assert all(
        b["difference"] == 0 and b["verdict"] == "no significant difference"
        for b in same["comparison"].values()
    )
    assert (
        compare_fidelity(registry, inputs(base_images), inputs(base_images), groups, ["psnr"])[
            "comparison"
        ]
        == {}
    )


# --------------------------------------------------------------------------- PSNR / MS-SSIM


def test_psnr_of_identical_images_is_inf_and_of_known_noise_matches_the_formula():
    reference = textures(6)
    assert (
        math.isinf(float(psnr(reference, reference.clone())))
        and float(psnr(reference, reference.clone())) > 0
    )
    signs = torch.where(
        torch.rand(reference.shape, generator=torch.Generator().manual_seed(0)) < 0.5, -1.0, 1.0
    )
    noisy = reference + 0.1 * signs  # every pixel off by exactly 0.1: MSE = 0.01, data range 2
    assert float(psnr(noisy, reference)) == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-4)
    per_image = psnr(torch.cat([reference[:1], noisy[1:]]), reference, per_image=True)
    assert math.isinf(float(per_image[0])) and per_image[1:].tolist() == pytest.approx(
        [26.0206] * 5, abs=1e-3
    )


def test_ms_ssim_is_one_for_identical_images_and_low_for_unrelated_ones():
    options = MSSSIMOptions()
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert ms_ssim_per_image(images, images.clone(), options).tolist() == pytest.approx(
        [1.0] * 4, abs=1e-6
    )
    assert float(ms_ssim_per_image(images, images.flip(0), options).max()) < 0.3
    many = images.repeat(20, 1, 1, 1)  # 80 pairs: more than one torchmetrics batch
    assert ms_ssim_per_image(many, many.roll(1, 0), options).shape == (80,)


def test_ms_ssim_scales_adapt_to_small_images():
    betas = ms_ssim_betas(64, 64, kernel_size=7)
    assert len(betas) == 4 and sum(betas) == pytest.approx(1.0)
    assert betas[0] / betas[1] == pytest.approx(
        0.0448 / 0.2856
    )  # truncated standard weights, renormalised
    assert len(ms_ssim_betas(256, 256, kernel_size=11)) == 5
    with pytest.raises(ConfigError, match="kernel_size"):
        ms_ssim_betas(8, 8, kernel_size=11)
    with pytest.raises(ValueError, match="odd"):
        MSSSIMOptions(kernel_size=8)


def test_diversity_ms_ssim_is_one_for_a_collapsed_set():
    collapsed = textures(1, size=64).repeat(10, 1, 1, 1)
    varied = torch.rand(10, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    metric = MSSSIM(MSSSIMOptions(diversity_pairs=20))
    inputs = FidelityInputs(
        real=varied, synthetic=collapsed, class_names=["x"], features=PooledStats()
    )
    assert metric.compute(inputs)["diversity_ms_ssim"] == pytest.approx(1.0, abs=1e-6)
    diverse = metric.compute(
        FidelityInputs(real=varied, synthetic=varied, class_names=["x"], features=PooledStats())
    )
    assert diverse["diversity_ms_ssim"] < 0.3 and "ms_ssim" not in diverse and diverse["notes"]


# --------------------------------------------------------------------------- per-region crops


def test_bounding_box_and_crops_on_a_hand_made_mask():
    image = torch.arange(3 * 16 * 16, dtype=torch.float32).reshape(1, 3, 16, 16) / 1000.0 - 0.5
    mask = torch.zeros(1, 16, 16, dtype=torch.long)
    mask[0, 2, 3] = 1  # two disjoint pieces of class 1: one pixel ...
    mask[0, 4:6, 6:9] = 1  # ... and a 2×3 block; the box spans both
    mask[0, 12:14, 12] = 2  # class 2: two pixels only
    assert bounding_box(mask[0], 1) == (2, 6, 3, 9)
    assert bounding_box(mask[0], 2) == (12, 14, 12, 13)
    assert bounding_box(mask[0], 3) is None

    crops, sources = class_crops(image, mask, 1, size=(4, 6), min_pixels=7)
    assert sources == [0] and torch.equal(
        crops[0], image[0, :, 2:6, 3:9]
    )  # every pixel of the box, other classes too
    none, sources = class_crops(image, mask, 1, size=(4, 6), min_pixels=8)  # class 1 has 7 pixels
    assert none.shape == (0, 3, 4, 6) and sources == []

    flat = torch.full((2, 3, 16, 16), 0.25)
    flat[1] = -0.5
    masks = torch.zeros(2, 16, 16, dtype=torch.long)
    masks[1, 5:8, 2:4] = 1  # only the second image holds class 1
    resized, sources = class_crops(flat, masks, 1, size=(16, 16), min_pixels=1)
    assert sources == [1] and resized.shape == (1, 3, 16, 16)
    assert torch.allclose(
        resized, torch.full_like(resized, -0.5)
    )  # upsampled from that image's box only


def test_region_fid_kid_per_class_counts_and_omissions():
    real, masks = textures(24), box_masks(24)
    synthetic_masks = masks.clone()
    synthetic_masks[:, 20:28, 2:12] = 0
    synthetic_masks[:4, 20:28, 2:12] = 2  # only 4 synthetic images hold class 2
    inputs = FidelityInputs(
        real=real,
        synthetic=real.clone(),
        class_names=["background", "organ", "tool"],
        features=PooledStats(),
        real_masks=masks,
        synthetic_masks=synthetic_masks,
    )
    out = RegionFIDKID(RegionOptions(min_crops=6)).compute(inputs)
    assert set(out["per_class"]) == {
        "organ"
    }  # background skipped, tool has too few synthetic crops
    organ = out["per_class"]["organ"]
    assert (organ["n_real"], organ["n_synthetic"]) == (24, 24) and organ["fid"] == pytest.approx(
        0.0, abs=1e-9
    )
    assert any("'tool'" in note and "12 real / 4 synthetic" in note for note in out["notes"])
    capped = RegionFIDKID(RegionOptions(min_crops=6, max_crops=10)).compute(inputs)["per_class"][
        "organ"
    ]
    assert (capped["n_real"], capped["n_synthetic"]) == (10, 10) and capped["fid"] == pytest.approx(
        0.0, abs=1e-9
    )  # same subset
    with pytest.raises(ValueError, match="max_crops"):
        RegionOptions(min_crops=6, max_crops=4)
    shifted = RegionFIDKID(RegionOptions(min_crops=6)).compute(
        dataclasses.replace(inputs, synthetic=real + 0.2)
    )
    assert shifted["per_class"]["organ"]["fid"] > 0.1


# --------------------------------------------------------------------------- memorisation


@pytest.mark.parametrize("space", ["feature", "pixel"])
def test_memorisation_finds_a_planted_copy(space: str):
    real, synthetic = textures(30, seed=0), textures(12, seed=5)
    synthetic[3] = real[7]
    out = Memorisation(MemorisationOptions(space=space, top_k=3)).compute(
        FidelityInputs(real=real, synthetic=synthetic, class_names=["x"], features=PooledStats())
    )
    assert out["closest_pairs"][0] == {"synthetic_index": 3, "real_index": 7, "distance": 0.0}
    assert len(out["closest_pairs"]) == 3 and out["closest_pairs"][1]["distance"] > 0
    assert out["nearest_distance"]["min"] == 0.0 and out["nearest_distance"]["median"] > 0


# --------------------------------------------------------------------------- compute_fidelity


def test_compute_fidelity_output_contract_and_json(registry: Registry):
    real, masks = textures(24), box_masks(24)
    extractor = PooledStats()
    variants = {
        "base": FidelityInputs(
            real=real,
            synthetic=textures(24, seed=9),
            class_names=["bg", "organ", "tool"],
            features=extractor,
            real_masks=masks,
            synthetic_masks=masks,
        ),
        "aligned": FidelityInputs(
            real=real,
            synthetic=real.clone(),
            class_names=["bg", "organ", "tool"],
            features=extractor,
            real_masks=masks,
            synthetic_masks=masks,
            reference=real.clone(),
        ),
    }
    result = compute_fidelity(registry, variants, options={"region-fid-kid": {"min_crops": 4}})
    assert set(result) == {"feature_extractor", "variants", "memorisation", "notes"}
    assert result["feature_extractor"] == {"name": extractor.name, "label": extractor.label}
    base, aligned = result["variants"]["base"], result["variants"]["aligned"]
    assert set(base) == {
        "fid",
        "kid_mean",
        "kid_std",
        "diversity_ms_ssim",
        "per_class",
    }  # no reference: no psnr/ms_ssim
    assert set(aligned) == set(base) | {"psnr", "ms_ssim"}
    assert (
        aligned["psnr"] == "inf"
        and aligned["ms_ssim"] == pytest.approx(1.0)
        and aligned["fid"] == pytest.approx(0.0, abs=1e-9)
    )
    assert set(base["per_class"]) == {"organ", "tool"}
    assert set(base["per_class"]["tool"]) == {"fid", "kid_mean", "kid_std", "n_real", "n_synthetic"}
    assert base["per_class"]["tool"]["n_real"] == 12
    memo = result["memorisation"]["aligned"]
    assert (
        set(memo) == {"nearest_distance", "closest_pairs"}
        and memo["nearest_distance"]["min"] == 0.0
    )
    assert set(memo["closest_pairs"][0]) == {"synthetic_index", "real_index", "distance"}
    assert any("psnr" in n and "[base]" in n for n in result["notes"])
    text = json.dumps(result, allow_nan=False)  # strict JSON: inf is a string
    assert json.loads(text) == result
    # memoised by content: real images (and the aligned copy of them) 24, base synthetic 24, real
    # crops 24 organ + 12 tool, base synthetic crops 24 + 12; the aligned crops equal the real ones
    assert extractor.images_seen == 24 + 24 + 36 + 36


def test_classification_inputs_skip_per_class_with_a_note(registry: Registry):
    inputs = FidelityInputs(
        real=textures(16),
        synthetic=textures(16, seed=3),
        class_names=["a", "b"],
        features=PooledStats(),
    )
    result = compute_fidelity(registry, {"base": inputs}, kinds=["fid", "region-fid-kid"])
    assert set(result["variants"]["base"]) == {"fid"} and "memorisation" not in result
    assert any(n.startswith("region-fid-kid:") and "per-class" in n for n in result["notes"])


def test_compute_fidelity_rejects_bad_options_and_mixed_extractors(registry: Registry):
    inputs = FidelityInputs(
        real=textures(8), synthetic=textures(8, seed=1), class_names=["a"], features=PooledStats()
    )
    with pytest.raises(ConfigError, match="kid"):
        compute_fidelity(registry, {"base": inputs}, kinds=["kid"], options={"kid": {"subsetz": 3}})
    other = FidelityInputs(
        real=textures(8), synthetic=textures(8, seed=1), class_names=["a"], features=PooledStats()
    )
    with pytest.raises(ValueError, match="feature extractor"):
        compute_fidelity(registry, {"base": inputs, "aligned": other}, kinds=["fid"])


def test_fidelity_inputs_validate_shapes():
    with pytest.raises(DataError, match="reference"):
        FidelityInputs(
            real=textures(4),
            synthetic=textures(4),
            class_names=["a"],
            features=PooledStats(),
            reference=textures(3),
        )
    with pytest.raises(DataError, match="real_masks"):
        FidelityInputs(
            real=textures(4),
            synthetic=textures(4),
            class_names=["a"],
            features=PooledStats(),
            real_masks=box_masks(4, 16),
        )


def test_json_safe_handles_non_finite_and_tensor_numbers():
    value = {
        "a": float("inf"),
        "b": -math.inf,
        "c": float("nan"),
        "d": torch.tensor(2.5),
        "e": np.int64(3),
        "f": (1, np.float32(0.5)),
    }
    assert json_safe(value) == {
        "a": "inf",
        "b": "-inf",
        "c": "nan",
        "d": 2.5,
        "e": 3,
        "f": [1, 0.5],
    }


# --------------------------------------------------------------------------- feature extractors


def _tiny_split(n: int, size: int, segmentation: bool) -> Split:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.int64)
    masks[:, : size // 2] = 1
    return Split(
        images=images,
        ids=[str(i) for i in range(n)],
        labels=np.arange(n) % 2,
        masks=masks if segmentation else None,
    )


def test_selector_features_from_a_classifier_and_a_segmenter():
    from saadi_selectors.classifiers import ResNet18Selector
    from saadi_selectors.options import ClassifierOptions, SegformerOptions
    from saadi_selectors.segmenters import SegformerSelector

    cls = ResNet18Selector(ClassifierOptions(epochs=1, batch_size=8, augment=False))
    cls.kind = "resnet18"
    cls.fit(
        Dataset(
            "t", "classification", ["a", "b"], _tiny_split(16, 16, False), _tiny_split(4, 16, False)
        )
    )
    seg = SegformerSelector(SegformerOptions(epochs=1, batch_size=8, augment=False))
    seg.fit(
        Dataset(
            "s", "segmentation", ["bg", "x"], _tiny_split(16, 32, True), _tiny_split(4, 32, True)
        )
    )

    images16 = textures(5, size=16)
    extractor = selector_features(cls)
    feats = extractor(images16)
    assert feats.shape == (5, 512) and feats.dtype == torch.float64
    assert (
        torch.equal(feats, extractor(images16))
        and "NOT Inception" in extractor.label
        and "resnet18" in extractor.name
    )
    assert torch.allclose(
        feats[2:3], extractor(images16[2:3]).reshape(1, -1), atol=1e-5
    )  # batch-independent
    assert seg.features(textures(3, size=32)).shape == (3, 256)  # mit_b0's deepest stage
    with pytest.raises(DataError, match="16"):
        cls.features(textures(2, size=32))


def test_standardised_selector_features_measure_in_units_of_the_real_spread():
    """A backbone whose features barely vary (scale 1e-4 around 0.8) gives FID ~1e-8 in raw units
    whatever the shift; standardised on the real images, the same shift of 2 real standard
    deviations per dimension gives FID = 4 per dimension, and a constant dimension is dropped."""
    from saadi_metrics.distribution import fid_from_features

    from saadi_core.interfaces import Selector

    class Flat(Selector):
        fit = predict = score = save = load = lambda *a, **k: None

        def features(self, images: torch.Tensor) -> torch.Tensor:  # 3 informative dims + 1 constant
            x = images.mean(dim=(2, 3))  # (N, 3), per-channel means
            return torch.cat([0.8 + 1e-4 * x, torch.full((len(x), 1), 0.5)], dim=1)

    real = torch.randn(400, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.2
    spread = real.mean(dim=(2, 3)).std(dim=0)  # per-channel std of the feature's source
    shifted = real + 2 * spread[None, :, None, None]
    raw = selector_features(Flat(None))
    assert fid_from_features(raw(real), raw(shifted)) < 1e-6
    standard = selector_features(Flat(None), standardise_on=real)
    assert (
        standard(real).shape == (400, 3)
        and "standardised" in standard.label
        and "NOT Inception" in standard.label
    )
    assert torch.allclose(
        standard(real).mean(dim=0), torch.zeros(3, dtype=torch.float64), atol=1e-9
    )
    assert fid_from_features(standard(real), standard(shifted)) == pytest.approx(3 * 4.0, rel=1e-3)


def test_selector_without_features_is_a_clear_error():
    from saadi_core.interfaces import Selector

    class Blind(Selector):
        fit = predict = score = save = load = lambda *a, **k: None

    with pytest.raises(ConfigError, match="features"):
        selector_features(Blind(None))


def test_inception_features_load_local_weights_only(tmp_path: Path):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    model = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=7)
    weights = tmp_path / "inception.pt"
    torch.save(model.state_dict(), weights)
    extractor = inception_features(weights)
    feats = extractor(textures(2, size=32))
    assert (
        feats.shape == (2, 2048)
        and torch.isfinite(feats).all()
        and "inception.pt" in extractor.label
    )

    with_aux = tmp_path / "inception_aux.pt"
    torch.save(
        {
            "state_dict": inception_v3(
                weights=None, aux_logits=True, init_weights=False
            ).state_dict()
        },
        with_aux,
    )
    assert (
        inception_features(with_aux).model.AuxLogits is not None
    )  # head and aux classifier read from the file

    with pytest.raises(ConfigError, match="missing.pt"):
        inception_features(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="garbage.pt"):
        inception_features(garbage)
    wrong = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(3, 4), "conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ConfigError, match="resnet.pt"):
        inception_features(wrong)


def test_plugin_and_core_contract_import_no_torch():
    code = (
        "import sys; import saadi_metrics.plugin, saadi_core.evaluation.fidelity; "
        "assert 'torch' not in sys.modules and 'saadi_metrics.distribution' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_metric_kind_is_registered_with_valid_profiles(registry: Registry):
    assert registry.kinds("metric") == ALL_KINDS
    for kind in ALL_KINDS:
        entry = registry.get("metric", kind)
        for profile in ("tiny", "paper"):
            metric = entry.load()(entry.build_options({}, profile))
            assert metric.name == kind and callable(metric.compute)
