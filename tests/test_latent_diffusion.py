"""What the latent diffusion generators share: the core's options base, model container and saved
layout (``saadi_core.diffusion.latent*``) on a model of the core's own, and the behaviour both
plugins (``ssd``, ``ssi``) get from it — option and load errors, a pretrained directory's missing
parts and wrong UNet, lazy registration — tested once for each.

No test here trains for more than a few steps of a 16 px model.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from _diffusion_helpers import (
    LATENT_SMALL,
    SIZE,
    save_tiny_stable_diffusion,
    toy_classification,
    toy_segmentation,
)
from pydantic import ValidationError

from saadi_core.data.dataset import Dataset
from saadi_core.diffusion.latent import build_from_config, load_saved, save_model, unet_channels
from saadi_core.diffusion.latent_options import LatentDiffusionOptions, PredictionType
from saadi_core.diffusion.latent_training import LatentTrainingLoop
from saadi_core.errors import ConfigError, DataError, PipelineError
from saadi_core.interfaces import _SilentProgress
from saadi_core.registry import OptionsError, Registry

#: per plugin: a dataset of the task it needs and small options
PLUGINS: dict[str, tuple[Any, dict[str, Any]]] = {
    "ssd": (toy_classification, LATENT_SMALL),
    "ssi": (toy_segmentation, {**LATENT_SMALL, "n_conditions": 3}),
}


class DemoOptions(LatentDiffusionOptions):
    """A generator of the core's own: defaults for the fields each generator must set."""

    prompt_template: str = "a {class}"
    block_out_channels: list[int] = [16, 32]
    unet_attention: list[bool] = [False, True]
    prediction_type: PredictionType | None = "epsilon"
    max_steps: int = 3
    random_flip: bool = False
    sampling_steps: int = 2


def _demo_options(**overrides: Any) -> DemoOptions:
    small = {
        "unshuffle_factor": 2,
        "norm_num_groups": 8,
        "attention_head_dim": 8,
        "text_hidden_size": 16,
        "text_heads": 2,
    }
    return DemoOptions(**{**small, "text_layers": 1, **overrides})


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["ssd", "ssi"])


# --------------------------------------------------------------------------- the core on its own


def test_each_generator_sets_its_own_defaults_and_shares_the_validators() -> None:
    class Bare(LatentDiffusionOptions):
        pass

    with pytest.raises(ValidationError) as info:
        Bare()
    missing = {error["loc"][0] for error in info.value.errors()}
    assert missing == {
        "prompt_template",
        "block_out_channels",
        "unet_attention",
        "prediction_type",
        "max_steps",
        "random_flip",
        "sampling_steps",
    }
    with pytest.raises(ValidationError, match="same length"):
        _demo_options(block_out_channels=[16, 32, 64])
    with pytest.raises(ValidationError, match="class"):
        _demo_options(prompt_template="no placeholder")
    with pytest.raises(ValidationError, match="extra"):
        _demo_options(unknown=1)


@pytest.mark.parametrize("inpainting", [False, True])
def test_build_save_load_round_trip(inpainting: bool, tmp_path: Path) -> None:
    options = _demo_options()
    rng_state = torch.random.get_rng_state()
    model = build_from_config(options, ["a x", "a y"], SIZE, name="demo", inpainting=inpainting)
    assert torch.equal(
        torch.random.get_rng_state(), rng_state
    )  # seeded without touching the global RNG
    channels = 3 * 2**2
    assert unet_channels(channels, inpainting) == (
        2 * channels + 1 if inpainting else channels,
        channels,
    )
    assert (model.unet.config.in_channels, model.unet.config.out_channels) == unet_channels(
        channels, inpainting
    )
    assert model.latent_shape == (channels, SIZE // 2, SIZE // 2)
    again = build_from_config(options, ["a x", "a y"], SIZE, name="demo", inpainting=inpainting)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.unet.state_dict().values(), again.unet.state_dict().values())
    )

    save_model(model, tmp_path, {"class_names": ["x", "y"]}, name="demo")
    assert {p.name for p in tmp_path.iterdir()} == {
        "demo.json",
        "unet",
        "text_encoder",
        "tokenizer",
        "scheduler",
        "autoencoder",
    }
    loaded, meta = load_saved(tmp_path, name="demo")
    assert (
        meta == {"class_names": ["x", "y"]}
        and loaded.resolution == SIZE
        and loaded.references == {}
    )
    for a, b in ((model.unet, loaded.unet), (model.text_encoder, loaded.text_encoder)):
        assert all(
            torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())
        )
    assert loaded.noise_scheduler.config.prediction_type == "epsilon"
    with pytest.raises(DataError, match="other.json"):
        load_saved(tmp_path, name="other")


def test_training_loop_steps_logs_and_freezes() -> None:
    from accelerate import Accelerator

    class Recorder:
        def __init__(self) -> None:
            self.events: list[tuple[str, dict[str, Any]]] = []

        def track(self, iterable: Any, description: str, total: int | None = None) -> Any:
            self.events.append(("track", {"description": description, "total": total}))
            return iterable

        def log(self, event: str, **fields: Any) -> None:
            self.events.append((event, fields))

    options = _demo_options(max_steps=5, log_every=2, train_text_encoder=False, ema_decay=0.5)
    model = build_from_config(options, ["a x"], SIZE, name="demo")
    text_before = [p.clone() for p in model.text_encoder.parameters()]
    unet_before = [p.clone() for p in model.unet.parameters()]
    progress = Recorder()
    loop = LatentTrainingLoop(model, ["a x"], options, Accelerator(cpu=True), progress, name="demo")
    states = loop.prompt_states()
    assert (
        states.shape[0] == 2 and loop.uncond_index == 1 and not states.requires_grad
    )  # frozen text encoder
    x0 = torch.zeros(2, *model.latent_shape)
    for _ in loop.steps():
        prediction = loop.unet(
            x0, torch.tensor([1, 2]), encoder_hidden_states=states[[0, 1]]
        ).sample
        loop.update(prediction.pow(2).mean())
    history = loop.finish()
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5]
    assert progress.events[0] == ("track", {"description": "train demo", "total": 5})
    assert [fields["step"] for event, fields in progress.events if event == "demo.train"] == [
        2,
        4,
        5,
    ]
    assert all(torch.equal(a, b) for a, b in zip(text_before, model.text_encoder.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(unet_before, model.unet.parameters()))
    assert not any(p.requires_grad for m in model.modules() for p in m.parameters())
    assert not model.unet.training


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("constant_with_warmup", [0.5, 1.0, 1.0, 1.0, 1.0]),
        ("cosine", [0.5, 1.0, 0.75, 0.25, 0.0]),
        ("linear", [0.5, 1.0, 2 / 3, 1 / 3, 0.0]),
    ],
)
def test_learning_rate_warms_up_then_follows_the_schedule(schedule: str, expected: list) -> None:
    """A decayed schedule reaches 0 exactly at max_steps, whatever max_steps is."""
    from accelerate import Accelerator

    options = _demo_options(
        max_steps=5, lr_warmup_steps=2, learning_rate=1.0, lr_scheduler=schedule, ema_decay=0
    )
    model = build_from_config(options, ["a x"], SIZE, name="demo")
    loop = LatentTrainingLoop(
        model, ["a x"], options, Accelerator(cpu=True), _SilentProgress(), name="d"
    )
    x0 = torch.zeros(1, *model.latent_shape)
    for _ in loop.steps():
        states = loop.prompt_states()
        loop.update(
            loop.unet(x0, torch.tensor([1]), encoder_hidden_states=states[[0]]).sample.pow(2).mean()
        )
    # each history entry is the rate after that step's scheduler update
    assert [h["lr"] for h in loop.finish()] == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------- both plugins


@pytest.mark.parametrize("kind", sorted(PLUGINS))
def test_option_and_load_errors_are_clear(registry: Registry, kind: str) -> None:
    make_dataset, small = PLUGINS[kind]
    dataset: Dataset = make_dataset()
    fresh = registry.create("generator", kind, small)
    with pytest.raises(PipelineError, match="fit"):
        fresh.sample(fresh.conditions(dataset), 1, seed=0)
    with pytest.raises(ConfigError, match=f"^{kind} option autoencoder='kl'.*autoencoder_path"):
        registry.create("generator", kind, {**small, "autoencoder": "kl"}).fit(dataset)
    with pytest.raises(ConfigError, match=f"^{kind} option 'resolution'"):
        registry.create("generator", kind, {**small, "resolution": 18}).fit(dataset)
    with pytest.raises(OptionsError, match="prompt_template"):
        registry.get("generator", kind).build_options({"prompt_template": "no placeholder"})
    with pytest.raises(OptionsError, match="norm_num_groups"):
        registry.get("generator", kind).build_options(
            {"block_out_channels": [48, 64], "norm_num_groups": 32}
        )
    with pytest.raises(DataError, match=f"{kind}.json"):
        fresh.load(Path(f"/nonexistent/{kind}"))


@pytest.mark.parametrize("kind", sorted(PLUGINS))
def test_pretrained_directory_missing_part_is_a_data_error(
    registry: Registry, kind: str, tmp_path: Path
) -> None:
    (tmp_path / "sd" / "unet").mkdir(parents=True)
    generator = registry.create(
        "generator", kind, {"pretrained": str(tmp_path / "sd")}, profile="paper"
    )
    with pytest.raises(DataError, match="text_encoder"):
        generator.fit(PLUGINS[kind][0]())


def test_text_to_image_generator_refuses_an_inpainting_unet(
    registry: Registry, tmp_path: Path
) -> None:
    sd = tmp_path / "sd-inpaint"
    save_tiny_stable_diffusion(sd, inpainting=True)
    generator = registry.create(
        "generator", "ssd", {"pretrained": str(sd), "resolution": SIZE}, profile="paper"
    )
    with pytest.raises(
        ConfigError, match="9 input / 4 output channels, but 4-channel latents need 4 / 4"
    ):
        generator.fit(toy_classification())


@pytest.mark.parametrize("kind", sorted(PLUGINS))
def test_registration_is_lazy(kind: str) -> None:
    code = (
        "import sys\n"
        f"import saadi_{kind}.plugin\n"
        "from saadi_core.registry import Registry\n"
        f"r = Registry.discover(only=['{kind}'])\n"
        f"entry = r.get('generator', '{kind}')\n"
        f"assert entry.plugin == '{kind}', entry.plugin\n"
        "assert entry.build_options({}, 'paper').max_steps == 3000\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_second_mixed_precision_in_one_process_is_a_clear_error() -> None:
    """accelerate keeps one precision per process; asking for another names the option instead of
    surfacing accelerate's ValueError."""
    from saadi_core.diffusion.builders import make_accelerator

    first = make_accelerator(None, "cpu", "no")
    assert make_accelerator(None, "cpu", "auto").mixed_precision == first.mixed_precision == "no"
    with pytest.raises(
        ConfigError, match="this component: options.mixed_precision 'bf16' conflicts with 'no'"
    ):
        make_accelerator(None, "cpu", "bf16")


def test_random_flips_keep_paired_tensors_aligned_and_follow_the_generator() -> None:
    from saadi_core.diffusion.builders import random_flips

    images = torch.arange(8 * 3 * 4 * 4, dtype=torch.float32).view(8, 3, 4, 4)
    masks = images[:, 0].long()  # a mask that is a channel of its image: flips must keep them equal
    flipped, flipped_masks = random_flips(torch.Generator().manual_seed(0), images, masks)
    assert torch.equal(flipped[:, 0].long(), flipped_masks)
    again, _ = random_flips(torch.Generator().manual_seed(0), images, masks)
    assert torch.equal(flipped, again) and not torch.equal(flipped, images)
    draws = torch.Generator().manual_seed(0)
    horizontal, vertical = (
        torch.rand(8, generator=draws) < 0.5,
        torch.rand(8, generator=draws) < 0.5,
    )
    for i in range(8):
        expected = images[i].flip(-1) if horizontal[i] else images[i]
        assert torch.equal(flipped[i], expected.flip(-2) if vertical[i] else expected)
