"""The ``ssd`` generator: training, deterministic sampling, persistence, the DiffusionTarget view,
the pretrained (paper-profile) loading path and lazy registration.

Everything runs on 16 px images with a UNet of a few 10k parameters; the trained generator is
shared by the module so training happens once.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from saadi_core.data.dataset import Dataset, Split
from saadi_core.errors import ConfigError, DataError, PipelineError
from saadi_core.registry import OptionsError, Registry

SIZE = 16
SMALL = {
    "seed": 3,
    "unshuffle_factor": 2,
    "unet_channels": [16, 32],
    "unet_attention": [False, True],
    "unet_norm_groups": 8,
    "unet_head_dim": 8,
    "text_hidden_size": 16,
    "text_heads": 2,
    "text_layers": 1,
    "max_steps": 40,
    "batch_size": 8,
    "learning_rate": 3e-3,
    "lr_warmup_steps": 0,
    "sampling_steps": 4,
    "sample_batch_size": 4,
}


def _toy_dataset(n: int = 24, task: str = "classification") -> Dataset:
    """Three classes on a pink background: a filled square, a hollow square, a horizontal bar."""
    rng = np.random.default_rng(0)
    images = np.full((n, SIZE, SIZE, 3), (220, 160, 160), np.uint8)
    labels = np.arange(n) % 3
    for i, label in enumerate(labels):
        y, x = rng.integers(2, 6, 2)
        colour = rng.integers(40, 200, 3)
        if label == 0:
            images[i, y : y + 9, x : x + 9] = colour
        elif label == 1:
            images[i, y : y + 9, x : x + 9] = colour
            images[i, y + 3 : y + 6, x + 3 : x + 6] = (220, 160, 160)
        else:
            images[i, y + 3 : y + 6, 1:-1] = colour
    split = Split(images=images, ids=[f"t/{i}" for i in range(n)], labels=labels.astype(np.int64))
    return Dataset(name="inline", task=task, class_names=["block", "frame", "bar"], train=split, test=split)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["ssd"])


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return _toy_dataset()


@pytest.fixture(scope="module")
def trained(registry: Registry, dataset: Dataset):
    generator = registry.create("generator", "ssd", SMALL)
    generator.fit(dataset)
    return generator


def _images(samples) -> torch.Tensor:
    return torch.stack([s.image for s in samples])


# --------------------------------------------------------------------------- training / sampling


def _fixed_loss(generator, dataset: Dataset) -> float:
    """Diffusion loss on the training images with fixed noise and timesteps (per-step training
    losses are too noisy to compare after a few steps)."""
    from saadi_core.diffusion.targets import training_target
    from saadi_core.interfaces import Sample

    conditions = generator.conditions(dataset)
    images = dataset.train.image_tensor()
    samples = [Sample(image=img, condition=conditions[int(y)], generator="real", seed=0) for img, y in zip(images, dataset.train.labels)]
    target = generator.diffusion_target()
    x0, cond = target.encode(samples)
    rng = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=rng)
    t = torch.linspace(0, 999, len(samples)).long()
    x_t = target.noise_scheduler.add_noise(x0, noise, t)
    with torch.no_grad():
        prediction = target.predict(x_t, t, cond)
    return float(torch.nn.functional.mse_loss(prediction, training_target(target.noise_scheduler, x0, noise, t)))


def test_fit_lowers_the_loss_and_model_is_small(registry: Registry, trained, dataset: Dataset) -> None:
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
    assert [(s.condition.id, s.index) for s in samples[:2]] == [("class:block", 0), ("class:block", 1)]
    for s in samples:
        assert s.image.shape == (3, SIZE, SIZE) and s.image.dtype == torch.float32
        assert s.image.device.type == "cpu"
        assert float(s.image.min()) >= -1.0 and float(s.image.max()) <= 1.0
        assert s.seed == 5 and s.generator == "ssd" and s.mask is None
    assert float(_images(samples).std()) > 0.05  # not a constant image


def test_sampling_is_deterministic_and_batch_independent(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)
    full = trained.sample(conditions, 3, seed=11)
    again = trained.sample(conditions, 3, seed=11)
    assert torch.equal(_images(full), _images(again))
    # sample (bar, 1) alone, in a smaller request, and after a different condition
    alone = trained.sample([conditions[2]], 2, seed=11)
    assert torch.equal(alone[1].image, full[2 * 3 + 1].image)
    mixed = trained.sample([conditions[2], conditions[0]], 1, seed=11)
    assert torch.equal(mixed[0].image, full[2 * 3].image)
    assert torch.equal(mixed[1].image, full[0].image)
    other_seed = trained.sample(conditions, 3, seed=12)
    assert not torch.allclose(_images(full), _images(other_seed), atol=1e-3)


def test_classifier_free_guidance_changes_samples(trained, dataset: Dataset) -> None:
    condition = trained.conditions(dataset)[:1]
    plain = trained.sample(condition, 1, seed=2)[0].image
    trained.options.guidance_scale = 3.0
    try:
        guided = trained.sample(condition, 1, seed=2)[0].image
    finally:
        trained.options.guidance_scale = 1.0
    assert guided.shape == plain.shape
    assert not torch.allclose(guided, plain, atol=1e-4)


def test_dpm_solver_sampler_runs(registry: Registry, trained, dataset: Dataset, tmp_path: Path) -> None:
    trained.save(tmp_path / "g")
    other = registry.create("generator", "ssd", {**SMALL, "sampler": "dpm-solver++"})
    other.load(tmp_path / "g")
    images = _images(other.sample(other.conditions(dataset), 1, seed=0))
    assert images.shape == (3, 3, SIZE, SIZE) and torch.isfinite(images).all()


def test_save_load_round_trip_reproduces_samples(registry: Registry, trained, dataset: Dataset, tmp_path: Path) -> None:
    trained.save(tmp_path / "gen")
    assert {p.name for p in (tmp_path / "gen").iterdir()} == {
        "ssd.json", "unet", "text_encoder", "tokenizer", "scheduler", "autoencoder",
    }
    meta = json.loads((tmp_path / "gen" / "ssd.json").read_text())
    assert meta["class_names"] == ["block", "frame", "bar"] and meta["references"] == {}
    loaded = registry.create("generator", "ssd", SMALL)
    loaded.load(tmp_path / "gen")
    conditions = trained.conditions(dataset)
    assert torch.equal(_images(trained.sample(conditions, 2, seed=4)), _images(loaded.sample(conditions, 2, seed=4)))


def test_sample_before_fit_and_wrong_dataset_are_clear_errors(registry: Registry, dataset: Dataset) -> None:
    fresh = registry.create("generator", "ssd", SMALL)
    with pytest.raises(PipelineError, match="fit"):
        fresh.sample(fresh.conditions(dataset), 1, seed=0)
    with pytest.raises(ConfigError, match="classification"):
        fresh.fit(_toy_dataset(task="segmentation"))
    with pytest.raises(ConfigError, match="autoencoder_path"):
        registry.create("generator", "ssd", {**SMALL, "autoencoder": "kl"}).fit(dataset)
    with pytest.raises(ConfigError, match="resolution"):
        registry.create("generator", "ssd", {**SMALL, "resolution": 18}).fit(dataset)
    with pytest.raises(OptionsError, match="prompt_template"):
        registry.get("generator", "ssd").build_options({"prompt_template": "no placeholder"})
    with pytest.raises(DataError, match="ssd.json"):
        fresh.load(Path("/nonexistent/ssd"))


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

    assert target.noise_scheduler.config.prediction_type == "v_prediction"
    t = torch.tensor([10, 500, 900])
    noise = torch.randn_like(x0)
    x_t = target.noise_scheduler.add_noise(x0, noise, t)
    with torch.no_grad():
        before = target.predict(x_t, t, cond)
        unet = target.trainable_module()
        assert unet is trained.model.unet
        weight = unet.conv_out.weight
        original = weight.clone()
        weight.add_(0.05)
        after = target.predict(x_t, t, cond)
        weight.copy_(original)
    assert before.shape == x0.shape
    assert not torch.allclose(before, after)


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
    unet.add_adapter(LoraConfig(r=2, lora_alpha=8, target_modules=target.lora_target_modules(), init_lora_weights=False))
    try:
        adapted = trained.sample(conditions, 1, seed=9)[0].image
        unet.disable_adapters()
        disabled = trained.sample(conditions, 1, seed=9)[0].image
    finally:
        unet.delete_adapters("default")
    assert not torch.allclose(adapted, base, atol=1e-4)
    assert torch.equal(disabled, base)


# --------------------------------------------------------------------------- pretrained (paper) path


def _save_tiny_stable_diffusion(root: Path) -> None:
    """A miniature Stable Diffusion directory written with ``save_pretrained`` (no download)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase:  # character-level BPE without merges
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=32, projection_dim=16,
        )
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=16,
    )
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8,
    )
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    for name, part in [("tokenizer", tokenizer), ("text_encoder", text_encoder), ("vae", vae), ("unet", unet), ("scheduler", scheduler)]:
        part.save_pretrained(root / name)


def test_pretrained_stable_diffusion_directory_loads_trains_and_samples(registry: Registry, dataset: Dataset, tmp_path: Path) -> None:
    sd = tmp_path / "sd"
    _save_tiny_stable_diffusion(sd)
    options = {
        "pretrained": str(sd), "resolution": SIZE, "max_steps": 2, "batch_size": 4,
        "gradient_checkpointing": False, "sampling_steps": 3, "sample_batch_size": 2,
    }
    generator = registry.create("generator", "ssd", options, profile="paper")
    assert generator.options.autoencoder == "kl" and generator.options.guidance_scale == 7.5
    generator.fit(dataset)
    assert generator.model.noise_scheduler.config.prediction_type == "epsilon"  # kept from the SD directory
    condition = generator.conditions(dataset)[:1]
    image = generator.sample(condition, 1, seed=0)[0].image
    assert image.shape == (3, SIZE, SIZE) and torch.isfinite(image).all()
    x0, cond = generator.diffusion_target().encode(generator.sample(condition, 1, seed=0))
    assert x0.shape == (1, 4, SIZE // 2, SIZE // 2)

    generator.save(tmp_path / "saved")
    saved = tmp_path / "saved"
    assert not (saved / "text_encoder").exists() and not (saved / "autoencoder").exists()  # frozen parts referenced
    reloaded = registry.create("generator", "ssd", options, profile="paper")
    reloaded.load(saved)
    assert torch.equal(reloaded.sample(condition, 1, seed=0)[0].image, image)


def test_pretrained_directory_missing_part_is_a_data_error(registry: Registry, dataset: Dataset, tmp_path: Path) -> None:
    (tmp_path / "sd" / "unet").mkdir(parents=True)
    generator = registry.create("generator", "ssd", {"pretrained": str(tmp_path / "sd")}, profile="paper")
    with pytest.raises(DataError, match="text_encoder"):
        generator.fit(dataset)


# --------------------------------------------------------------------------- registration


def test_entry_point_registration_is_lazy() -> None:
    code = (
        "import sys\n"
        "import saadi_ssd.plugin\n"
        "from saadi_core.registry import Registry\n"
        "r = Registry.discover(only=['ssd'])\n"
        "entry = r.get('generator', 'ssd')\n"
        "assert entry.plugin == 'ssd', entry.plugin\n"
        "assert entry.build_options({}, 'paper').max_steps == 3000\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
