"""The ``ssi`` generator: the Eq. 2 blend and masked loss, conditions and their augmentation,
training, region-by-region sampling (shapes, kept background, determinism, batch independence),
persistence, the DiffusionTarget view (with the DPO aligner), the pretrained inpainting loading
path and conformance. What SSI shares with SSD (option and load errors, a pretrained directory's
missing parts, lazy registration) is tested for both in ``test_latent_diffusion.py``.

Everything runs on 16 px toy-seg images with a UNet of a few 10k parameters; the trained
generator is shared by the module so training happens once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _diffusion_helpers import (
    LATENT_SMALL,
    SIZE,
    guidance_scale,
    perturbed_predictions,
    save_tiny_stable_diffusion,
    stack_images,
    toy_segmentation,
)

from saadi_core.data.dataset import Dataset
from saadi_core.errors import ConfigError, PipelineError
from saadi_core.interfaces import Condition, Sample
from saadi_core.registry import Registry

SMALL = {**LATENT_SMALL, "sampling_steps": 3, "n_conditions": 3, "background_bank": 4}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["ssi"])


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return toy_segmentation()


@pytest.fixture(scope="module")
def trained(registry: Registry, dataset: Dataset):
    generator = registry.create("generator", "ssi", SMALL)
    generator.fit(dataset)
    return generator


# --------------------------------------------------------------------------- Eq. 2 and the loss


def test_eq2_blend_keeps_x0_outside_the_mask_and_the_loss_ignores_it() -> None:
    from saadi_ssi.inpaint import latent_mask, masked_blend, masked_mse, unet_input

    x_t = torch.full((2, 3, 4, 4), 5.0)
    x0 = torch.arange(96, dtype=torch.float32).reshape(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, 1:3, 1:3] = 1.0
    mask[1, :, 0, :] = 1.0
    blended = masked_blend(x_t, x0, mask)
    inside = mask.expand_as(x0).bool()
    assert torch.equal(blended[~inside], x0[~inside])  # outside the mask: exactly x0
    assert torch.equal(blended[inside], x_t[inside])  # inside: the noisy latent
    assert unet_input(x_t, mask, x0 * (1 - mask), x0).shape == (2, 7, 4, 4)  # C + 1 + C

    target = torch.zeros_like(x0)
    prediction = torch.where(inside, torch.ones_like(x0), torch.full_like(x0, 100.0))
    assert float(masked_mse(prediction, target, mask)) == pytest.approx(
        1.0
    )  # errors outside ignored
    prediction[0][mask[0].expand(3, 4, 4).bool()] = 3.0  # row 0: 4 cells, row 1: 4 cells
    assert float(masked_mse(prediction, target, mask)) == pytest.approx(
        (9.0 + 1.0) / 2
    )  # mean of per-row means

    pixel = torch.zeros(1, 1, 8, 8)
    pixel[0, 0, 5, 2] = 1.0  # a one-pixel region survives on the latent grid
    assert torch.equal(latent_mask(pixel, 4), torch.tensor([[[[0.0, 0.0], [1.0, 0.0]]]]))


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_exact_prediction_is_the_training_target_of_a_known_latent(kind: str) -> None:
    from saadi_ssi.inpaint import exact_prediction

    from saadi_core.diffusion.builders import build_noise_scheduler
    from saadi_core.diffusion.targets import training_target

    scheduler = build_noise_scheduler(prediction_type=kind)
    x0 = torch.rand(4, 3, 4, 4) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 10, 500, 999])
    x_t = scheduler.add_noise(x0, noise, t)
    expected = training_target(scheduler, x0, noise, t)
    assert torch.allclose(exact_prediction(scheduler, x_t, x0, t), expected, atol=1e-3)


# --------------------------------------------------------------------------- conditions


def test_conditions_are_training_masks_with_theirstack_images(
    registry: Registry, dataset: Dataset
) -> None:
    generator = registry.create("generator", "ssi", SMALL)  # conditions need no weights
    conditions = generator.conditions(dataset)
    assert len(conditions) == 3 and [c.id for c in conditions] == [
        c.id for c in generator.conditions(dataset)
    ]
    for c in conditions:
        source = c.meta["source"]
        assert c.id == f"mask:{source}"
        index = dataset.train.ids.index(source)
        assert c.mask.dtype == torch.int64 and torch.equal(
            c.mask, torch.from_numpy(dataset.train.masks[index])
        )
        assert torch.equal(c.control, dataset.train.image_tensor([index])[0])
    every = registry.create("generator", "ssi", {**SMALL, "n_conditions": None}).conditions(dataset)
    assert [c.id for c in every] == [f"mask:{i}" for i in dataset.train.ids]


def test_augmented_conditions_transform_mask_and_image_alike(
    registry: Registry, dataset: Dataset
) -> None:
    from saadi_ssi.conditions import apply_augmentation

    generator = registry.create(
        "generator", "ssi", {**SMALL, "condition_augment": "affine", "augment_copies": 2}
    )
    conditions = generator.conditions(dataset)
    assert len(conditions) == 9
    assert (
        conditions[1].id == f"{conditions[0].id}#aug1"
        and conditions[2].id == f"{conditions[0].id}#aug2"
    )
    params = conditions[1].meta["augment"]
    assert {"flip_x", "flip_y", "angle", "zoom", "shift_x", "shift_y"} <= set(params)
    json.dumps(conditions[1].meta)  # serialisable provenance
    assert not torch.equal(conditions[1].mask, conditions[0].mask)

    # an image that paints each class in its own colour must still agree with its warped mask
    palette = torch.tensor(
        [
            [-1.0, -1.0, -1.0],
            [1.0, -1.0, -1.0],
            [-1.0, 1.0, -1.0],
            [-1.0, -1.0, 1.0],
            [1.0, 1.0, 1.0],
        ]
    )
    mask = torch.from_numpy(dataset.train.masks[0])
    image = palette[mask].permute(2, 0, 1)
    warped, warped_mask = apply_augmentation(image, mask, params)
    agree = (warped - palette[warped_mask].permute(2, 0, 1)).abs().amax(0) < 0.5
    assert float(agree.float().mean()) > 0.8  # disagreement only along interpolated edges
    flipped, flipped_mask = apply_augmentation(image, mask, {"flip_x": True, "flip_y": False})
    assert torch.equal(flipped_mask, mask.flip(-1)) and torch.equal(flipped, image.flip(-1))


# --------------------------------------------------------------------------- training / sampling


def _real_samples(generator, dataset: Dataset) -> list[Sample]:
    """The training images as samples of their own masks (with their own image as known image)."""
    images = dataset.train.image_tensor()
    out = []
    for i, image in enumerate(images):
        mask = torch.from_numpy(dataset.train.masks[i])
        condition = Condition(id=f"mask:{dataset.train.ids[i]}", mask=mask, control=image)
        out.append(
            Sample(image=image, condition=condition, generator="real", seed=0, index=i, mask=mask)
        )
    return out


def _fixed_loss(generator, dataset: Dataset) -> float:
    """Region-inpainting error on the training images with fixed noise and timesteps."""
    from saadi_core.diffusion.targets import training_target

    target = generator.diffusion_target()
    x0, cond = target.encode(_real_samples(generator, dataset))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 999, len(x0)).long()
    x_t = target.noise_scheduler.add_noise(x0, noise, t)
    with torch.no_grad():
        prediction = target.predict(x_t, t, cond)
    regions = cond["view_masks"].amax(dim=1)
    error = (prediction - training_target(target.noise_scheduler, x0, noise, t)).pow(2)
    return float((error * regions).sum() / (regions.sum() * x0.shape[1]))


def test_fit_lowers_the_loss_and_the_model_is_an_inpainting_unet(
    registry: Registry, trained, dataset: Dataset
) -> None:
    assert len(trained.history) == SMALL["max_steps"]
    untrained = registry.create("generator", "ssi", {**SMALL, "max_steps": 0})
    untrained.fit(dataset)  # same seed: the initial weights of the trained model
    assert _fixed_loss(trained, dataset) < 0.8 * _fixed_loss(untrained, dataset)
    unet = trained.model.unet
    channels = 3 * SMALL["unshuffle_factor"] ** 2
    assert (unet.config.in_channels, unet.config.out_channels) == (2 * channels + 1, channels)
    assert sum(p.numel() for p in unet.parameters()) < 300_000
    assert not any(p.requires_grad for p in unet.parameters())


def test_samples_keep_the_known_background_and_carry_their_mask(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)
    samples = trained.sample(conditions, 2, seed=5)
    assert len(samples) == 6
    assert [(s.condition.id, s.index) for s in samples[:2]] == [
        (conditions[0].id, 0),
        (conditions[0].id, 1),
    ]
    for s in samples:
        assert (
            s.image.shape == (3, SIZE, SIZE)
            and s.image.dtype == torch.float32
            and s.image.device.type == "cpu"
        )
        assert float(s.image.min()) >= -1.0 and float(s.image.max()) <= 1.0
        assert s.seed == 5 and s.generator == "ssi"
        assert s.mask.dtype == torch.int64 and torch.equal(s.mask, s.condition.mask)
        present = [dataset.class_names[k] for k in range(1, 5) if (s.mask == k).any()]
        assert s.meta["regions"] == present and s.meta["background"] == "known image"
        background = s.mask == 0  # the known (real) image, bit for bit
        assert background.any() and torch.equal(
            s.image[:, background], s.condition.control[:, background]
        )
    # the regions are generated: they differ between two samples of one condition
    region = samples[0].mask > 0
    assert not torch.allclose(samples[0].image[:, region], samples[1].image[:, region], atol=1e-3)


def test_sampling_is_deterministic_and_batch_independent(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)
    full = trained.sample(conditions, 3, seed=11)
    assert torch.equal(stack_images(full), stack_images(trained.sample(conditions, 3, seed=11)))
    alone = trained.sample([conditions[2]], 2, seed=11)
    assert torch.equal(alone[1].image, full[2 * 3 + 1].image)
    mixed = trained.sample([conditions[2], conditions[0]], 1, seed=11)
    assert torch.equal(mixed[0].image, full[2 * 3].image) and torch.equal(
        mixed[1].image, full[0].image
    )
    assert not torch.allclose(
        stack_images(full), stack_images(trained.sample(conditions, 3, seed=12)), atol=1e-3
    )


def test_mask_only_condition_paints_the_background_too(
    registry: Registry, trained, dataset: Dataset
) -> None:
    mask = torch.from_numpy(dataset.test.masks[0])
    bare = Condition(id="mask:user/0", mask=mask)
    sample = trained.sample([bare], 1, seed=0)[0]
    assert sample.meta["background"] == "generated" and sample.meta["regions"][0] == "background"
    assert torch.equal(sample.mask, mask) and torch.isfinite(sample.image).all()
    assert trained.sample([bare], 1, seed=0)[0].image.equal(sample.image)

    no_background = registry.create(
        "generator", "ssi", {**SMALL, "max_steps": 1, "background_view_share": 0.0}
    )
    no_background.fit(dataset)
    with pytest.raises(PipelineError, match="background_view_share"):
        no_background.sample([bare], 1, seed=0)


def test_classifier_free_guidance_changes_samples(trained, dataset: Dataset) -> None:
    condition = trained.conditions(dataset)[:1]
    plain = trained.sample(condition, 1, seed=2)[0].image
    with guidance_scale(trained, 3.0):
        guided = trained.sample(condition, 1, seed=2)[0].image
    assert not torch.allclose(guided, plain, atol=1e-4)


def test_save_load_round_trip_reproduces_samples(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    trained.save(tmp_path / "gen")
    assert {p.name for p in (tmp_path / "gen").iterdir()} == {
        "ssi.json",
        "unet",
        "text_encoder",
        "tokenizer",
        "scheduler",
        "autoencoder",
        "background_bank.npy",
    }
    meta = json.loads((tmp_path / "gen" / "ssi.json").read_text())
    assert meta["class_names"] == dataset.class_names and meta["references"] == {}
    assert meta["prompts"][2] == "An image of cystic duct in laparoscopic cholecystectomy"
    loaded = registry.create("generator", "ssi", SMALL)
    loaded.load(tmp_path / "gen")
    conditions = trained.conditions(dataset) + [
        Condition(id="mask:user/1", mask=torch.from_numpy(dataset.test.masks[1]))
    ]
    assert torch.equal(
        stack_images(trained.sample(conditions, 2, seed=4)),
        stack_images(loaded.sample(conditions, 2, seed=4)),
    )


def test_wrong_dataset_is_a_clear_error(registry: Registry, dataset: Dataset) -> None:
    # the errors SSI shares with SSD are tested for both in test_latent_diffusion.py
    classification = Dataset(
        name="cls", task="classification", class_names=["a"], train=dataset.train, test=dataset.test
    )
    with pytest.raises(ConfigError, match="segmentation"):
        registry.create("generator", "ssi", SMALL).fit(classification)


# --------------------------------------------------------------------------- diffusion target


def test_diffusion_target_encode_and_predict(trained, dataset: Dataset) -> None:
    from saadi_core.diffusion.targets import training_target

    target = trained.diffusion_target()
    samples = trained.sample(trained.conditions(dataset), 1, seed=1)
    x0, cond = target.encode(samples)
    n, k, c, h = (
        3,
        len(dataset.class_names),
        3 * SMALL["unshuffle_factor"] ** 2,
        SIZE // SMALL["unshuffle_factor"],
    )
    assert x0.shape == (n, c, h, h)
    assert torch.equal(
        x0[0], torch.nn.functional.pixel_unshuffle(samples[0].image[None], 2)[0]
    )  # lossless
    assert cond["views"].shape == (n, k) and cond["views"].dtype == torch.bool
    assert cond["view_masks"].shape == (n, k, 1, h, h) and cond["masked_latents"].shape == (
        n,
        k,
        c,
        h,
        h,
    )
    assert cond["encoder_hidden_states"].shape[:2] == (n, k) and cond["context"].shape == x0.shape
    for row, s in enumerate(samples):  # views = the regions the sampler generated
        assert [
            dataset.class_names[j] for j in torch.nonzero(cond["views"][row]).flatten()
        ] == s.meta["regions"]
    x0_again, cond_again = target.encode(samples)
    assert torch.equal(x0, x0_again) and all(
        torch.equal(cond[key], cond_again[key]) for key in cond
    )

    t = torch.tensor([10, 500, 900])
    noise = torch.randn_like(x0)
    x_t = target.noise_scheduler.add_noise(x0, noise, t)
    goal = training_target(target.noise_scheduler, x0, noise, t)
    assert target.trainable_module() is trained.model.unet
    before, after = perturbed_predictions(target, x_t, t, cond)
    outside = cond["view_masks"].amax(dim=1).expand_as(x0) == 0
    assert outside.any() and torch.allclose(
        before[outside], goal[outside], atol=1e-4
    )  # no error outside the regions
    assert not torch.allclose(before[~outside], after[~outside])  # the network decides inside


def _copy(registry: Registry, generator, path: Path):
    """A separate instance of ``generator`` (adapters must not leak into the shared fixture)."""
    generator.save(path)
    copy = registry.create("generator", "ssi", SMALL)
    copy.load(path)
    return copy


def test_sampling_goes_through_adapters_on_the_trainable_module(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    from peft import LoraConfig

    generator = _copy(registry, trained, tmp_path / "copy")
    target = generator.diffusion_target()
    unet = target.trainable_module()
    conditions = generator.conditions(dataset)[:1]
    base = generator.sample(conditions, 1, seed=9)[0].image
    unet.add_adapter(
        LoraConfig(
            r=2, lora_alpha=8, target_modules=target.lora_target_modules(), init_lora_weights=False
        )
    )
    adapted = generator.sample(conditions, 1, seed=9)[0].image
    unet.disable_adapters()
    disabled = generator.sample(conditions, 1, seed=9)[0].image
    assert not torch.allclose(adapted, base, atol=1e-4)
    assert torch.equal(disabled, base)


def test_conformance_generator_and_dpo_aligner(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    from saadi_core.conformance import check_aligner, check_generator

    check_generator(trained, dataset, fit=False, work_dir=tmp_path / "generator")
    copy = _copy(registry, trained, tmp_path / "copy")  # the aligner adapts in place
    aligner = Registry.discover(only=["align"]).create(
        "aligner", "diffusion-dpo", {"steps": 3, "batch_size": 2, "rank": 2}
    )
    check_aligner(
        aligner,
        copy,
        dataset,
        n_per_condition=2,
        fit_generator=False,
        work_dir=tmp_path / "aligner",
    )


# --------------------------------------------------------------------------- pretrained (paper) path


def test_pretrained_inpainting_directory_loads_trains_and_samples(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    sd = tmp_path / "sd-inpaint"
    save_tiny_stable_diffusion(sd, inpainting=True)
    options = {
        "pretrained": str(sd),
        "resolution": SIZE,
        "max_steps": 2,
        "batch_size": 4,
        "gradient_checkpointing": False,
        "sampling_steps": 2,
        "sample_batch_size": 2,
        "n_conditions": 1,
    }
    generator = registry.create("generator", "ssi", options, profile="paper")
    assert generator.options.autoencoder == "kl" and generator.options.guidance_scale == 7.5
    generator.fit(dataset)
    assert (
        generator.model.noise_scheduler.config.prediction_type == "epsilon"
    )  # kept from the directory
    assert generator.model.unet.config.in_channels == 9
    condition = generator.conditions(dataset)
    sample = generator.sample(condition, 1, seed=0)[0]
    assert sample.image.shape == (3, SIZE, SIZE) and torch.isfinite(sample.image).all()
    x0, cond = generator.diffusion_target().encode([sample])
    assert x0.shape == (1, 4, SIZE // 2, SIZE // 2) and cond["masked_latents"].shape[2] == 4

    generator.save(tmp_path / "saved")
    saved = tmp_path / "saved"
    assert (
        not (saved / "text_encoder").exists() and not (saved / "autoencoder").exists()
    )  # frozen parts referenced
    reloaded = registry.create("generator", "ssi", options, profile="paper")
    reloaded.load(saved)
    assert torch.equal(reloaded.sample(condition, 1, seed=0)[0].image, sample.image)


def test_pretrained_directory_must_be_an_inpainting_model(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    sd = tmp_path / "sd"
    save_tiny_stable_diffusion(sd)  # a text-to-image UNet (4 input channels)
    generator = registry.create(
        "generator", "ssi", {"pretrained": str(sd), "resolution": SIZE}, profile="paper"
    )
    with pytest.raises(ConfigError, match="inpainting"):
        generator.fit(dataset)
