"""The ``simgen`` generator: Fibonacci-lattice colour coding (round trip, separation, noise
margin), the joint image + mask space, unconditional and class-presence conditions, training,
sampling (masks carried by samples, determinism, clean-mask fraction), persistence and the
pretrained path, the DiffusionTarget view with the DPO aligner, the paper profile and lazy
registration.

Everything runs on 16 px toy-seg images with a UNet of ~0.1 M parameters; the trained generators
are shared by the module so each is trained once.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _diffusion_helpers import SIZE, perturbed_predictions, stack_images, toy_segmentation

from saadi_core.data.dataset import Dataset, Split
from saadi_core.errors import ConfigError, DataError, PipelineError
from saadi_core.interfaces import Condition, Sample
from saadi_core.registry import Registry

SMALL = {
    "seed": 3,
    "unshuffle_factor": 2,
    "block_out_channels": [16, 32],
    "norm_num_groups": 8,
    "attention_head_dim": 8,
    "max_steps": 40,
    "batch_size": 8,
    "learning_rate": 3e-3,
    "lr_warmup_steps": 0,
    "sampling_steps": 3,
    "sample_batch_size": 4,
}
PRESENCE = {**SMALL, "conditioning": "class-presence", "max_steps": 20}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["simgen"])


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return toy_segmentation()


@pytest.fixture(scope="module")
def trained(registry: Registry, dataset: Dataset):
    generator = registry.create("generator", "simgen", SMALL)
    generator.fit(dataset)
    return generator


@pytest.fixture(scope="module")
def presence(registry: Registry, dataset: Dataset):
    generator = registry.create("generator", "simgen", PRESENCE)
    generator.fit(dataset)
    return generator


def _masks(dataset: Dataset) -> torch.Tensor:
    return torch.from_numpy(dataset.train.masks).long()


# --------------------------------------------------------------------------- colour coding


def test_fibonacci_lattice_points_are_unit_colours_spread_over_the_sphere() -> None:
    from saadi_simgen.colour_coding import fibonacci_lattice, min_separation_degrees, palette

    for n in (1, 2, 5, 13, 36, 64):
        points = fibonacci_lattice(n)
        assert points.shape == (n, 3)
        assert abs(points.min()) <= 1.0 and points.max() <= 1.0
        assert float(abs((points**2).sum(axis=1) - 1.0).max()) < 1e-12
    # equal-area bands: the heights are evenly spaced, and successive points turn by the golden angle
    points = fibonacci_lattice(8)
    assert points[:, 2].tolist() == pytest.approx([1 - (2 * i + 1) / 8 for i in range(8)])
    turn = math.atan2(points[1, 1], points[1, 0]) % (2 * math.pi)
    assert turn == pytest.approx(math.pi * (3 - math.sqrt(5)))
    # far apart: 5 classes (toy-seg) are ~87 degrees apart; 64 classes still ~22 degrees, close to the
    # ~sqrt(4 pi / n) spacing of a uniform covering and far above what n random colours give
    assert min_separation_degrees(palette(5)) > 85
    assert min_separation_degrees(palette(64)) > 20
    random = torch.nn.functional.normalize(
        torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), dim=1
    )
    assert min_separation_degrees(random) < 10


def test_masks_round_trip_exactly_and_decoding_ignores_scale(dataset: Dataset) -> None:
    from saadi_simgen.colour_coding import clean_fraction, decode_mask, encode_mask, palette

    colours = palette(dataset.num_classes)
    masks = _masks(dataset)
    coded = encode_mask(masks, colours)
    assert coded.shape == (len(masks), 3, SIZE, SIZE) and coded.dtype == torch.float32
    assert float(coded.abs().max()) <= 1.0
    labels, similarity = decode_mask(coded, colours)
    assert labels.dtype == torch.int64 and torch.equal(labels, masks)
    assert (
        torch.allclose(similarity, torch.ones_like(similarity))
        and clean_fraction(similarity) == 1.0
    )
    labels, _ = decode_mask(0.2 * coded, colours)  # a faint colour still points at its class
    assert torch.equal(labels, masks)
    assert torch.equal(encode_mask(masks[0], colours), coded[0])  # one mask: (3, H, W)

    between = (colours[1] + colours[2])[:, None, None].expand(
        3, 4, 4
    )  # halfway between two classes
    _, similarity = decode_mask(between, colours)
    assert clean_fraction(similarity) == 0.0


def test_decoding_is_robust_to_gaussian_noise() -> None:
    from saadi_simgen.colour_coding import noisy_decode_accuracy, palette

    from saadi_core.data.toy_seg import make_toy_seg

    masks = torch.from_numpy(make_toy_seg(seed=1, n_train=16, n_test=1, image_size=64).train.masks)
    colours = palette(5)
    # measured on toy-seg masks: >= 99 % up to sigma 0.25 per channel (a quarter of a unit colour),
    # then it degrades smoothly; the test also fails if noise stops mattering
    assert noisy_decode_accuracy(masks, colours, 0.1) == 1.0
    assert noisy_decode_accuracy(masks, colours, 0.25) >= 0.99
    assert 0.85 < noisy_decode_accuracy(masks, colours, 0.4) < 0.95
    assert noisy_decode_accuracy(masks, colours, 1.0) < 0.6


# --------------------------------------------------------------------------- joint space


def test_joint_space_is_lossless_at_the_model_resolution(dataset: Dataset) -> None:
    from saadi_simgen.network import JointSpace

    space = JointSpace(dataset.num_classes, SIZE, 2)
    images, masks = dataset.train.image_tensor(), _masks(dataset)
    x0 = space.encode(images, masks)
    assert x0.shape == (len(images), 24, SIZE // 2, SIZE // 2) == (len(images), *space.shape)
    decoded, labels, similarity = space.decode(x0)
    assert torch.allclose(decoded, images, atol=1e-6) and torch.equal(labels, masks)
    assert float(similarity.min()) > 0.999

    half = JointSpace(dataset.num_classes, SIZE // 2, 1)  # a dataset larger than the model: resized
    _, small, _ = half.decode(half.encode(images, masks))
    assert small.shape == (len(images), SIZE // 2, SIZE // 2) and torch.equal(
        small, masks[:, ::2, ::2]
    )
    with pytest.raises(ConfigError, match="unshuffle_factor"):
        JointSpace(5, 30, 4)


# --------------------------------------------------------------------------- conditions


def test_unconditional_by_default_and_presence_patterns_from_training_masks(
    registry: Registry, dataset: Dataset
) -> None:
    from saadi_simgen.conditions import presence_pattern

    assert [c.id for c in registry.create("generator", "simgen", SMALL).conditions(dataset)] == [
        "uncond"
    ]
    conditions = registry.create("generator", "simgen", PRESENCE).conditions(dataset)
    patterns = [tuple(c.meta["presence"]) for c in conditions]
    seen = {presence_pattern(m, dataset.num_classes) for m in dataset.train.masks}
    assert set(patterns) == seen and len(patterns) == len(seen)
    assert sum(c.meta["train_masks"] for c in conditions) == len(dataset.train)
    for c in conditions:
        assert c.id == "presence:" + "+".join(c.meta["classes"])
        assert c.meta["classes"] == [dataset.class_names[k] for k in c.meta["presence"]]
        json.dumps(c.meta)


def test_presence_conditions_ask_for_classes_seen_together(presence, dataset: Dataset) -> None:
    conditions = presence.conditions(dataset)
    with_artery = [c for c in conditions if "cystic_artery" in c.meta["classes"]]
    assert with_artery
    asked = presence.presence_condition(with_artery[0].meta["classes"])
    assert (
        asked.id == with_artery[0].id and asked.meta["presence"] == with_artery[0].meta["presence"]
    )
    samples = presence.sample([asked], 2, seed=0)
    assert all(s.condition.id == asked.id for s in samples)
    with pytest.raises(PipelineError, match="unknown foreground class"):
        presence.presence_condition(["liver"])
    combinations = [tuple(k for k in range(1, 5) if bits >> (k - 1) & 1) for bits in range(16)]
    unseen = next(p for p in combinations if p not in presence.model.patterns)
    with pytest.raises(PipelineError, match="never seen in training"):
        presence.sample(
            [Condition(id="presence:odd", meta={"presence": [*unseen, *unseen]})], 1, seed=0
        )
    with pytest.raises(PipelineError, match="meta\\['presence'\\]"):
        presence.sample([Condition(id="uncond")], 1, seed=0)


def test_presence_labels_steer_the_network(presence, dataset: Dataset) -> None:
    model = presence.model
    assert model.unet.config.num_class_embeds == len(model.patterns) + 1  # + the null label
    x = torch.randn(1, *model.space.shape, generator=torch.Generator().manual_seed(0)).expand(
        2, -1, -1, -1
    )
    t = torch.tensor([100, 100])
    with torch.no_grad():
        out = presence.predict(x, t, {"class_labels": torch.tensor([0, len(model.patterns)])})
    assert not torch.allclose(out[0], out[1], atol=1e-5)
    condition = presence.conditions(dataset)[:1]
    plain = presence.sample(condition, 1, seed=2)[0].image
    presence.options.guidance_scale = 3.0
    try:
        guided = presence.sample(condition, 1, seed=2)[0].image
    finally:
        presence.options.guidance_scale = 1.0
    assert not torch.allclose(guided, plain, atol=1e-4)


# --------------------------------------------------------------------------- training / sampling


def _fixed_loss(generator, dataset: Dataset) -> float:
    """Joint denoising error on the training pairs with fixed noise and timesteps."""
    from saadi_core.diffusion.targets import training_target

    target = generator.diffusion_target()
    images = dataset.train.image_tensor()
    samples = [
        Sample(
            image=images[i],
            condition=Condition(id="uncond"),
            generator="real",
            seed=0,
            index=i,
            mask=m,
        )
        for i, m in enumerate(_masks(dataset))
    ]
    x0, cond = target.encode(samples)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, target.noise_scheduler.config.num_train_timesteps - 1, len(x0)).long()
    with torch.no_grad():
        prediction = target.predict(target.noise_scheduler.add_noise(x0, noise, t), t, cond)
    return float((prediction - training_target(target.noise_scheduler, x0, noise, t)).pow(2).mean())


def test_fit_lowers_the_joint_loss_and_reports_the_decode_accuracy(
    registry: Registry, trained, dataset: Dataset
) -> None:
    assert len(trained.history) == SMALL["max_steps"]
    untrained = registry.create("generator", "simgen", {**SMALL, "max_steps": 0})
    untrained.fit(dataset)  # same seed: the initial weights of the trained model
    assert _fixed_loss(trained, dataset) < 0.7 * _fixed_loss(untrained, dataset)
    unet = trained.model.unet
    assert (unet.config.in_channels, unet.config.out_channels) == (24, 24)
    assert unet.config.num_class_embeds is None
    assert not any(p.requires_grad for p in unet.parameters())
    report = trained.model.report
    assert report["mask_decode_accuracy_train"] == 1.0 and report["steps"] == SMALL["max_steps"]
    assert report["parameters"] == sum(p.numel() for p in unet.parameters()) < 200_000


def test_samples_carry_their_generated_mask(trained, dataset: Dataset) -> None:
    from saadi_simgen.generator import mask_quality

    samples = trained.sample(trained.conditions(dataset), 6, seed=5)
    assert [(s.condition.id, s.index) for s in samples] == [("uncond", i) for i in range(6)]
    for s in samples:
        assert (
            s.image.shape == (3, SIZE, SIZE)
            and s.image.dtype == torch.float32
            and s.image.device.type == "cpu"
        )
        assert float(s.image.min()) >= -1.0 and float(s.image.max()) <= 1.0
        assert s.mask.dtype == torch.int64 and s.mask.shape == (SIZE, SIZE)
        assert int(s.mask.min()) >= 0 and int(s.mask.max()) < dataset.num_classes
        assert s.seed == 5 and s.generator == "simgen" and set(s.meta) == {"mask_clean_fraction"}
        assert 0.0 <= s.meta["mask_clean_fraction"] <= 1.0
    assert len({s.content_hash for s in samples}) == 6
    quality = mask_quality(samples)
    assert (
        quality["n"] == 6
        and quality["min_mask_clean_fraction"] <= quality["mask_clean_fraction"] <= 1.0
    )
    with pytest.raises(PipelineError, match="simgen"):
        mask_quality(
            [Sample(image=samples[0].image, condition=Condition(id="x"), generator="other", seed=0)]
        )


def test_class_presence_shares_and_pattern_match(dataset: Dataset) -> None:
    from saadi_simgen.generator import class_presence

    names = dataset.class_names
    first, second = torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long)
    first[0, 0], first[1, 1] = 1, 3  # gallbladder + artery, as asked
    second[2, 2] = 1  # gallbladder only, but gallbladder + duct was asked for
    image = torch.zeros(3, 4, 4)
    samples = [
        Sample(
            image=image,
            condition=Condition(id="a", meta={"presence": [1, 3]}),
            generator="simgen",
            seed=0,
            mask=first,
        ),
        Sample(
            image=image,
            condition=Condition(id="b", meta={"presence": [1, 2]}),
            generator="simgen",
            seed=0,
            mask=second,
        ),
    ]
    out = class_presence(samples, names)
    assert out["n"] == 2 and out["presence_match"] == 0.5
    assert out["share_with_class"] == {
        "background": 1.0,
        "gallbladder": 1.0,
        "cystic_duct": 0.0,
        "cystic_artery": 0.5,
        "tool": 0.0,
    }
    unconditional = [
        Sample(
            image=image, condition=Condition(id="uncond"), generator="simgen", seed=0, mask=first
        )
    ]
    assert "presence_match" not in class_presence(unconditional, names)
    with pytest.raises(PipelineError, match="at least one"):
        class_presence([], names)


def test_sampling_is_deterministic_and_batch_independent(trained, dataset: Dataset) -> None:
    uncond = trained.conditions(dataset)
    full = trained.sample(uncond, 5, seed=11)
    again = trained.sample(uncond, 5, seed=11)
    assert torch.equal(stack_images(full), stack_images(again))
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(full, again))
    assert torch.equal(trained.sample(uncond, 2, seed=11)[1].image, full[1].image)
    assert not torch.allclose(
        stack_images(full), stack_images(trained.sample(uncond, 5, seed=12)), atol=1e-3
    )


def test_output_size_follows_the_dataset_when_the_model_is_smaller(
    registry: Registry, dataset: Dataset
) -> None:
    generator = registry.create(
        "generator",
        "simgen",
        {**SMALL, "resolution": SIZE // 2, "unshuffle_factor": 1, "max_steps": 2},
    )
    generator.fit(dataset)
    assert generator.model.space.resolution == SIZE // 2
    sample = generator.sample(generator.conditions(dataset), 1, seed=0)[0]
    assert sample.image.shape == (3, SIZE, SIZE) and sample.mask.shape == (SIZE, SIZE)


# --------------------------------------------------------------------------- persistence / pretrained


def test_save_load_round_trip_reproduces_samples(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    trained.save(tmp_path / "gen")
    assert {p.name for p in (tmp_path / "gen").iterdir()} == {"simgen.json", "unet", "scheduler"}
    meta = json.loads((tmp_path / "gen" / "simgen.json").read_text())
    assert (
        meta["class_names"] == dataset.class_names
        and meta["conditioning"] == "none"
        and meta["patterns"] is None
    )
    assert meta["fit_report"]["mask_decode_accuracy_train"] == 1.0
    loaded = registry.create("generator", "simgen", SMALL)
    loaded.load(tmp_path / "gen")
    conditions = trained.conditions(dataset)
    first, second = trained.sample(conditions, 3, seed=4), loaded.sample(conditions, 3, seed=4)
    assert torch.equal(stack_images(first), stack_images(second))
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(first, second))
    with pytest.raises(DataError, match="simgen.json"):
        registry.create("generator", "simgen", SMALL).load(tmp_path)


def test_class_presence_model_saves_its_patterns(
    registry: Registry, presence, dataset: Dataset, tmp_path: Path
) -> None:
    presence.save(tmp_path / "gen")
    loaded = registry.create("generator", "simgen", PRESENCE)
    loaded.load(tmp_path / "gen")
    assert loaded.model.patterns == presence.model.patterns
    conditions = presence.conditions(dataset)[:2]
    assert torch.equal(
        stack_images(presence.sample(conditions, 1, seed=1)),
        stack_images(loaded.sample(conditions, 1, seed=1)),
    )


def test_pretrained_directory_starts_training_from_its_weights(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    trained.model.unet.save_pretrained(
        tmp_path / "hub" / "unet"
    )  # a bare diffusers UNet2DModel directory
    trained.model.noise_scheduler.save_pretrained(tmp_path / "hub" / "scheduler")
    options = {
        **SMALL,
        "pretrained": str(tmp_path / "hub"),
        "max_steps": 0,
        "prediction_type": "epsilon",
    }
    loaded = registry.create("generator", "simgen", options)
    loaded.fit(dataset)
    assert (
        loaded.model.noise_scheduler.config.prediction_type == "sample"
    )  # the directory's scheduler is kept
    conditions = trained.conditions(dataset)
    assert torch.equal(
        stack_images(loaded.sample(conditions, 2, seed=3)),
        stack_images(trained.sample(conditions, 2, seed=3)),
    )

    wrong = registry.create("generator", "simgen", {**options, "unshuffle_factor": 1})
    with pytest.raises(
        ConfigError,
        match="24 input / 24 output channels, but image \\+ mask with unshuffle_factor 1 need 6 / 6",
    ):
        wrong.fit(dataset)
    conditional = registry.create(
        "generator", "simgen", {**options, "conditioning": "class-presence"}
    )
    with pytest.raises(ConfigError, match="num_class_embeds=None"):
        conditional.fit(dataset)
    with pytest.raises(DataError, match="no unet/"):
        registry.create("generator", "simgen", {**SMALL, "pretrained": str(tmp_path)}).fit(dataset)
    shutil.rmtree(
        tmp_path / "hub" / "scheduler"
    )  # without one, the scheduler comes from the options
    bare = registry.create("generator", "simgen", options)
    bare.fit(dataset)
    assert bare.model.noise_scheduler.config.prediction_type == "epsilon"


def test_wrong_dataset_and_options_are_clear_errors(registry: Registry, dataset: Dataset) -> None:
    classification = Dataset(
        name="cls", task="classification", class_names=["a"], train=dataset.train, test=dataset.test
    )
    with pytest.raises(ConfigError, match="segmentation"):
        registry.create("generator", "simgen", SMALL).fit(classification)
    masks = dataset.train.masks.copy()
    masks[0, 0, 0] = 7
    bad = Dataset(
        name="bad",
        task="segmentation",
        class_names=dataset.class_names,
        test=dataset.test,
        train=Split(images=dataset.train.images, ids=dataset.train.ids, masks=masks),
    )
    with pytest.raises(DataError, match="class ids 0..7, outside \\[0, 5\\)"):
        registry.create("generator", "simgen", SMALL).fit(bad)
    with pytest.raises(ConfigError, match="'resolution' \\(10\\) must be a multiple of 4"):
        registry.create("generator", "simgen", {**SMALL, "resolution": 10}).fit(dataset)
    with pytest.raises(ConfigError, match="norm_num_groups"):
        registry.create("generator", "simgen", {**SMALL, "block_out_channels": [12, 32]})
    with pytest.raises(PipelineError, match="fit\\(\\) or load\\(\\)"):
        registry.create("generator", "simgen", SMALL).sample([Condition(id="uncond")], 1, seed=0)


# --------------------------------------------------------------------------- diffusion target / DPO


def test_diffusion_target_re_encodes_image_and_the_samples_own_mask(
    trained, dataset: Dataset
) -> None:
    target = trained.diffusion_target()
    samples = trained.sample(trained.conditions(dataset), 2, seed=1)
    x0, cond = target.encode(samples)
    assert x0.shape == (2, *trained.model.space.shape) and cond == {}
    images, masks, _ = trained.model.space.decode(x0)
    assert torch.allclose(images, stack_images(samples), atol=1e-6)
    assert torch.equal(masks, torch.stack([s.mask for s in samples]))
    swapped = [
        Sample(
            image=s.image,
            condition=s.condition,
            generator="simgen",
            seed=1,
            index=s.index,
            mask=o.mask,
        )
        for s, o in zip(samples, samples[::-1])
    ]
    x0_swapped, _ = target.encode(swapped)
    joint, joint_swapped = (torch.nn.functional.pixel_shuffle(x, 2) for x in (x0, x0_swapped))
    assert torch.equal(joint[:, :3], joint_swapped[:, :3])  # same images ...
    assert not torch.equal(joint[:, 3:], joint_swapped[:, 3:])  # ... other masks: DPO sees the pair

    t = torch.tensor([10, 200])
    x_t = target.noise_scheduler.add_noise(x0, torch.randn_like(x0), t)
    assert target.trainable_module() is trained.model.unet
    before, after = perturbed_predictions(target, x_t, t, cond)
    assert not torch.allclose(before, after)
    names = {name for name, _ in target.trainable_module().named_modules()}
    for suffix in target.lora_target_modules():
        assert any(n == suffix or n.endswith("." + suffix) for n in names), suffix
    assert target.lora_target_modules() == ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]


def test_presence_target_carries_the_label_of_each_sample(presence, dataset: Dataset) -> None:
    conditions = presence.conditions(dataset)[:2]
    samples = presence.sample(conditions, 1, seed=0)
    _, cond = presence.diffusion_target().encode(samples)
    assert cond["class_labels"].tolist() == [
        presence.model.patterns.index(tuple(c.meta["presence"])) for c in conditions
    ]


def test_conformance_generator_and_dpo_aligner(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    from saadi_core.conformance import check_aligner, check_generator

    check_generator(trained, dataset, fit=False, work_dir=tmp_path / "generator")
    trained.save(tmp_path / "copy")
    copy = registry.create("generator", "simgen", SMALL)  # the aligner adapts in place
    copy.load(tmp_path / "copy")
    aligner = Registry.discover(only=["align"]).create(
        "aligner", "diffusion-dpo", {"steps": 3, "batch_size": 2, "rank": 2}
    )
    check_aligner(
        aligner,
        copy,
        dataset,
        n_per_condition=4,
        fit_generator=False,
        work_dir=tmp_path / "aligner",
    )
    assert "lora_" in " ".join(n for n, _ in copy.model.unet.named_parameters())


def test_conformance_of_the_class_presence_generator(
    presence, dataset: Dataset, tmp_path: Path
) -> None:
    from saadi_core.conformance import check_generator

    check_generator(
        presence, dataset, fit=False, n_per_condition=1, max_conditions=2, work_dir=tmp_path
    )


def test_dpo_loss_starts_at_ln2_on_simgen_pairs(
    trained, dataset: Dataset, tmp_path: Path, registry: Registry
) -> None:
    from saadi_align.dpo import ADAPTER_NAME, dpo_forward, encode_pairs

    from saadi_core.diffusion.lora import attach_lora, lora_config
    from saadi_core.interfaces import Pair, PairSet

    trained.save(tmp_path / "copy")
    copy = registry.create("generator", "simgen", SMALL)
    copy.load(tmp_path / "copy")
    target = copy.diffusion_target()
    attach_lora(
        target.trainable_module(), lora_config(target.lora_target_modules(), rank=2), ADAPTER_NAME
    )
    samples = copy.sample(copy.conditions(dataset), 4, seed=0)
    pairs = PairSet(
        [Pair(samples[0], samples[1], 0.9, 0.1), Pair(samples[2], samples[3], 0.8, 0.2)]
    )
    cache = encode_pairs(target, pairs, chunk=4)
    x0, cond = cache.batch(torch.arange(2), torch.device("cpu"))
    noise = torch.randn(2, *x0.shape[1:]).repeat(2, 1, 1, 1)
    t = torch.tensor([30, 120]).repeat(2)
    out = dpo_forward(target, x0, cond, noise, t, beta=5000.0)
    assert float(out.loss.detach()) == pytest.approx(math.log(2), abs=1e-6)


# --------------------------------------------------------------------------- registration / profiles


def test_paper_profile_is_the_papers_resunet() -> None:
    code = (
        "import sys\n"
        "import saadi_simgen.plugin\n"
        "from saadi_core.registry import Registry\n"
        "entry = Registry.discover(only=['simgen']).get('generator', 'simgen')\n"
        "assert entry.plugin == 'simgen' and entry.task == 'segmentation'\n"
        "o = entry.build_options({}, 'paper')\n"
        "assert (o.resolution, o.block_out_channels, o.num_train_timesteps) == (256, [64, 128, 256, 512], 250)\n"
        "assert (o.unshuffle_factor, o.prediction_type, o.batch_size, o.learning_rate) == (1, 'epsilon', 16, 1e-4)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

    from saadi_simgen.network import JointSpace, build_unet, lora_targets
    from saadi_simgen.options import PAPER_PROFILE, SimGenOptions

    options = SimGenOptions(**PAPER_PROFILE)
    unet = build_unet(options, JointSpace(5, 256, 1), None)
    assert (unet.config.in_channels, unet.config.out_channels, unet.config.act_fn) == (6, 6, "gelu")
    assert 50e6 < sum(p.numel() for p in unet.parameters()) < 65e6  # paper: 62.7 M
    assert lora_targets(unet) == ["conv1", "conv2"]  # no attention in the paper's ResUNet
