"""The ``ssd`` generator: training, deterministic sampling, persistence, the DiffusionTarget view
and the pretrained (paper-profile) loading path. What SSD shares with SSI (option and load
errors, lazy registration) is tested for both in ``test_latent_diffusion.py``.

Everything runs on 16 px images with a UNet of a few 10k parameters; the trained generator is
shared by the module so training happens once.
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
    toy_classification,
)

from saadi_core.data.dataset import Dataset
from saadi_core.errors import ConfigError
from saadi_core.registry import Registry

SMALL = {**LATENT_SMALL, "sampling_steps": 4}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["ssd"])


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return toy_classification()


@pytest.fixture(scope="module")
def trained(registry: Registry, dataset: Dataset):
    generator = registry.create("generator", "ssd", SMALL)
    generator.fit(dataset)
    return generator


# --------------------------------------------------------------------------- training / sampling


def _fixed_loss(generator, dataset: Dataset) -> float:
    """Diffusion loss on the training images with fixed noise and timesteps (per-step training
    losses are too noisy to compare after a few steps)."""
    from saadi_core.diffusion.targets import training_target
    from saadi_core.interfaces import Sample

    conditions = generator.conditions(dataset)
    images = dataset.train.image_tensor()
    samples = [
        Sample(image=img, condition=conditions[int(y)], generator="real", seed=0)
        for img, y in zip(images, dataset.train.labels)
    ]
    target = generator.diffusion_target()
    x0, cond = target.encode(samples)
    rng = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=rng)
    t = torch.linspace(0, 999, len(samples)).long()
    x_t = target.noise_scheduler.add_noise(x0, noise, t)
    with torch.no_grad():
        prediction = target.predict(x_t, t, cond)
    return float(
        torch.nn.functional.mse_loss(
            prediction, training_target(target.noise_scheduler, x0, noise, t)
        )
    )


def test_fit_lowers_the_loss_and_model_is_small(
    registry: Registry, trained, dataset: Dataset
) -> None:
    assert len(trained.history) == SMALL["max_steps"]
    untrained = registry.create("generator", "ssd", {**SMALL, "max_steps": 0})
    untrained.fit(dataset)  # same seed: the initial weights of the trained model
    assert _fixed_loss(trained, dataset) < 0.8 * _fixed_loss(untrained, dataset)
    n_params = sum(p.numel() for p in trained.model.unet.parameters())
    assert n_params < 300_000
    assert not any(p.requires_grad for p in trained.model.unet.parameters())


def test_conditions_are_one_class_prompt_each(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)
    assert [c.id for c in conditions] == ["class:block", "class:frame", "class:bar"]
    assert [c.class_id for c in conditions] == [0, 1, 2]
    assert conditions[2].prompt == "An image of bar in laparoscopic gynecological surgery"


def test_sample_shapes_ranges_and_provenance(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)
    samples = trained.sample(conditions, 2, seed=5)
    assert len(samples) == 6
    assert [(s.condition.id, s.index) for s in samples[:2]] == [
        ("class:block", 0),
        ("class:block", 1),
    ]
    for s in samples:
        assert s.image.shape == (3, SIZE, SIZE) and s.image.dtype == torch.float32
        assert s.image.device.type == "cpu"
        assert float(s.image.min()) >= -1.0 and float(s.image.max()) <= 1.0
        assert s.seed == 5 and s.generator == "ssd" and s.mask is None
    assert float(stack_images(samples).std()) > 0.05  # not a constant image


def test_sampling_is_deterministic_and_batch_independent(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)
    full = trained.sample(conditions, 3, seed=11)
    again = trained.sample(conditions, 3, seed=11)
    assert torch.equal(stack_images(full), stack_images(again))
    # sample (bar, 1) alone, in a smaller request, and after a different condition
    alone = trained.sample([conditions[2]], 2, seed=11)
    assert torch.equal(alone[1].image, full[2 * 3 + 1].image)
    mixed = trained.sample([conditions[2], conditions[0]], 1, seed=11)
    assert torch.equal(mixed[0].image, full[2 * 3].image)
    assert torch.equal(mixed[1].image, full[0].image)
    other_seed = trained.sample(conditions, 3, seed=12)
    assert not torch.allclose(stack_images(full), stack_images(other_seed), atol=1e-3)


def test_classifier_free_guidance_changes_samples(trained, dataset: Dataset) -> None:
    condition = trained.conditions(dataset)[:1]
    with guidance_scale(trained, 1.0):
        plain = trained.sample(condition, 1, seed=2)[0].image
    with guidance_scale(trained, 3.0):
        guided = trained.sample(condition, 1, seed=2)[0].image
    assert guided.shape == plain.shape
    assert not torch.allclose(guided, plain, atol=1e-4)


def test_dpm_solver_sampler_runs(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    trained.save(tmp_path / "g")
    other = registry.create("generator", "ssd", {**SMALL, "sampler": "dpm-solver++"})
    other.load(tmp_path / "g")
    images = stack_images(other.sample(other.conditions(dataset), 1, seed=0))
    assert images.shape == (3, 3, SIZE, SIZE) and torch.isfinite(images).all()


def test_save_load_round_trip_reproduces_samples(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    trained.save(tmp_path / "gen")
    assert {p.name for p in (tmp_path / "gen").iterdir()} == {
        "ssd.json",
        "unet",
        "text_encoder",
        "tokenizer",
        "scheduler",
        "autoencoder",
    }
    meta = json.loads((tmp_path / "gen" / "ssd.json").read_text())
    assert meta["class_names"] == ["block", "frame", "bar"] and meta["references"] == {}
    loaded = registry.create("generator", "ssd", SMALL)
    loaded.load(tmp_path / "gen")
    conditions = trained.conditions(dataset)
    assert torch.equal(
        stack_images(trained.sample(conditions, 2, seed=4)),
        stack_images(loaded.sample(conditions, 2, seed=4)),
    )


def test_wrong_dataset_is_a_clear_error(registry: Registry) -> None:
    # the errors SSD shares with SSI are tested for both in test_latent_diffusion.py
    with pytest.raises(ConfigError, match="classification"):
        registry.create("generator", "ssd", SMALL).fit(toy_classification(task="segmentation"))


# --------------------------------------------------------------------------- diffusion target


def test_diffusion_target_encode_predict(trained, dataset: Dataset) -> None:
    target = trained.diffusion_target()
    samples = trained.sample(trained.conditions(dataset), 1, seed=1)
    x0, cond = target.encode(samples)
    assert x0.shape == (3, 12, SIZE // 2, SIZE // 2)
    # pixel-unshuffle is lossless: x0 is exactly the rearranged image
    assert torch.equal(x0[0], torch.nn.functional.pixel_unshuffle(samples[0].image[None], 2)[0])
    states = cond["encoder_hidden_states"]
    assert states.shape[0] == 3 and states.shape[-1] == SMALL["text_hidden_size"]
    assert not torch.allclose(states[0], states[1])  # different class prompts
    x0_again, cond_again = target.encode(samples)
    assert torch.equal(x0, x0_again) and torch.equal(states, cond_again["encoder_hidden_states"])

    assert (
        target.noise_scheduler.config.prediction_type == "sample"
    )  # the tiny default (x0-prediction)
    t = torch.tensor([10, 500, 900])
    noise = torch.randn_like(x0)
    x_t = target.noise_scheduler.add_noise(x0, noise, t)
    assert target.trainable_module() is trained.model.unet
    before, after = perturbed_predictions(target, x_t, t, cond)
    assert before.shape == x0.shape
    assert not torch.allclose(before, after)


def test_unconditional_input_is_the_empty_prompt_guidance_uses(trained, dataset: Dataset) -> None:
    target = trained.diffusion_target()
    _, cond = target.encode(trained.sample(trained.conditions(dataset), 1, seed=1))
    empty = target.unconditional(cond)["encoder_hidden_states"]
    assert empty.shape == cond["encoder_hidden_states"].shape
    assert all(torch.equal(row, trained.embed_prompts([""])[0]) for row in empty)
    assert not torch.equal(empty, cond["encoder_hidden_states"])


def test_sampling_goes_through_adapters_on_the_trainable_module(trained, dataset: Dataset) -> None:
    from peft import LoraConfig

    target = trained.diffusion_target()
    unet = target.trainable_module()
    names = {name.split(".")[-1] for name, _ in unet.named_modules()} | {
        ".".join(name.split(".")[-2:]) for name, _ in unet.named_modules()
    }
    assert set(target.lora_target_modules()) <= names
    conditions = trained.conditions(dataset)[:1]
    base = trained.sample(conditions, 1, seed=9)[0].image
    unet.add_adapter(
        LoraConfig(
            r=2, lora_alpha=8, target_modules=target.lora_target_modules(), init_lora_weights=False
        )
    )
    try:
        adapted = trained.sample(conditions, 1, seed=9)[0].image
        unet.disable_adapters()
        disabled = trained.sample(conditions, 1, seed=9)[0].image
    finally:
        unet.delete_adapters("default")
    assert not torch.allclose(adapted, base, atol=1e-4)
    assert torch.equal(disabled, base)


# --------------------------------------------------------------------------- pretrained (paper) path


def test_pretrained_stable_diffusion_directory_loads_trains_and_samples(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    sd = tmp_path / "sd"
    save_tiny_stable_diffusion(sd)
    options = {
        "pretrained": str(sd),
        "resolution": SIZE,
        "max_steps": 2,
        "batch_size": 4,
        "gradient_checkpointing": False,
        "sampling_steps": 3,
        "sample_batch_size": 2,
    }
    generator = registry.create("generator", "ssd", options, profile="paper")
    assert generator.options.autoencoder == "kl" and generator.options.guidance_scale == 7.5
    generator.fit(dataset)
    assert (
        generator.model.noise_scheduler.config.prediction_type == "epsilon"
    )  # kept from the SD directory
    condition = generator.conditions(dataset)[:1]
    image = generator.sample(condition, 1, seed=0)[0].image
    assert image.shape == (3, SIZE, SIZE) and torch.isfinite(image).all()
    x0, cond = generator.diffusion_target().encode(generator.sample(condition, 1, seed=0))
    assert x0.shape == (1, 4, SIZE // 2, SIZE // 2)

    generator.save(tmp_path / "saved")
    saved = tmp_path / "saved"
    assert (
        not (saved / "text_encoder").exists() and not (saved / "autoencoder").exists()
    )  # frozen parts referenced
    reloaded = registry.create("generator", "ssd", options, profile="paper")
    reloaded.load(saved)
    assert torch.equal(reloaded.sample(condition, 1, seed=0)[0].image, image)


@pytest.mark.parametrize("balanced", [False, True])
def test_class_balanced_batches_draw_rare_classes_as_often(balanced: bool) -> None:
    """Nine images of one class to one of the other: in the data's proportions the rare class is
    ~10 % of what training sees, with ``class_balanced`` ~50 %."""
    import numpy as np
    from saadi_ssd.options import SSDOptions
    from saadi_ssd.training import training_loader

    labels = np.array([0] * 90 + [1] * 10)
    images = np.zeros((100, 4, 4, 3), np.uint8)
    options = SSDOptions(pretrained=None, batch_size=10, class_balanced=balanced, seed=3)
    drawn = np.concatenate(
        [batch[1].numpy() for _ in range(20) for batch in training_loader(images, labels, options)]
    )
    share = (drawn == 1).mean()
    assert len(drawn) == 20 * 100
    assert (0.4 < share < 0.6) if balanced else share == 0.1
