"""The ``casdm`` generator: class weights and the class-aware losses against hand-computed values,
SPADE and the network's two pathways, the layout generator's colours and prompts, training,
conditions (training masks and generated layouts), sampling, persistence, the pretrained path,
the DiffusionTarget view with the DPO aligner, and conformance.

Everything runs on 16 px toy-seg images with networks of a few 10k parameters; the trained
generator is shared by the module so training happens once.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _diffusion_helpers import (
    SIZE,
    perturbed_predictions,
    save_tiny_stable_diffusion,
    stack_images,
    toy_segmentation,
)

from saadi_core.data.dataset import Dataset
from saadi_core.errors import ConfigError, DataError, PipelineError
from saadi_core.interfaces import Condition, Sample
from saadi_core.registry import Registry

SMALL = {
    "seed": 3,
    "unshuffle_factor": 2,
    "block_out_channels": [16, 32],
    "norm_num_groups": 8,
    "attention_head_dim": 8,
    "mask_hidden_channels": 8,
    "max_steps": 40,
    "batch_size": 8,
    "learning_rate": 3e-3,
    "lr_warmup_steps": 0,
    "n_conditions": 3,
    "sampling_steps": 3,
    "sample_batch_size": 4,
    "conditions": "both",
    "layout_unshuffle_factor": 2,
    "layout_block_out_channels": [32, 32],
    "layout_attention": [False, False],
    "layout_text_hidden_size": 16,
    "layout_max_steps": 10,
    "layout_batch_size": 8,
    "layout_sampling_steps": 2,
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["casdm", "align"])


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return toy_segmentation()


@pytest.fixture(scope="module")
def trained(registry: Registry, dataset: Dataset):
    generator = registry.create("generator", "casdm", SMALL)
    generator.fit(dataset)
    return generator


# --------------------------------------------------------------------------- Eq. 7 weights, Eq. 6 MSE


def test_class_weights_match_eq7_by_hand() -> None:
    from saadi_casdm.losses import class_weight_map

    # 2x2, three background pixels and one of class 1: HW/n = 4/3 and 4, sum 16/3
    weights = class_weight_map(
        torch.tensor([[[0, 0], [0, 1]]]), num_classes=5
    )  # absent classes 2..4 ignored
    assert torch.allclose(weights, torch.tensor([[[0.25, 0.25], [0.25, 0.75]]]))
    # 4x4 with n = (8, 6, 2): HW/n = 2, 8/3, 8 -> sum 38/3 -> w = 3/19, 4/19, 12/19
    mask = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 2], [1, 1, 1, 2]])[None]
    weights = class_weight_map(mask, num_classes=3)
    expected = torch.tensor([3 / 19, 4 / 19, 12 / 19])[mask]
    assert torch.allclose(weights, expected)
    # every present class carries the same total weight n_c * w_c
    totals = [float(weights[0][mask[0] == k].sum()) for k in range(3)]
    assert totals == pytest.approx([24 / 19] * 3)
    # a one-class mask: weight 1 everywhere; batches are independent
    both = class_weight_map(
        torch.stack([torch.zeros(2, 2, dtype=torch.long), torch.tensor([[0, 0], [0, 1]])]), 2
    )
    assert torch.allclose(both[0], torch.ones(2, 2)) and torch.allclose(
        both[1], torch.tensor([[0.25, 0.25], [0.25, 0.75]])
    )


def test_class_aware_mse_by_hand() -> None:
    from saadi_casdm.losses import class_aware_mse, class_weight_map

    weights = class_weight_map(torch.tensor([[[0, 0], [0, 1]]]), 2)
    target = torch.zeros(1, 1, 2, 2)
    prediction = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]])  # squared errors 1, 0, 0, 4
    # (0.25*1 + 0.75*4) / (0.25*3 + 0.75) = 3.25 / 1.5 = mean of the class means (1/3 and 4)
    assert float(class_aware_mse(prediction, target, weights)) == pytest.approx(13 / 6)
    assert float(class_aware_mse(prediction, target, torch.ones(1, 2, 2))) == pytest.approx(
        5 / 4
    )  # plain MSE
    # an unshuffled grid (4 channels of one 1x1 cell): the cell's error is the channel mean, weight pooled
    coarse = torch.nn.functional.pixel_unshuffle(prediction, 2)
    assert float(class_aware_mse(coarse, torch.zeros_like(coarse), weights)) == pytest.approx(5 / 4)
    # channels are averaged before weighting
    two = torch.cat([prediction, torch.zeros_like(prediction)], dim=1)
    assert float(class_aware_mse(two, torch.zeros_like(two), weights)) == pytest.approx(13 / 12)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_predicted_x0_inverts_the_training_target(kind: str) -> None:
    from saadi_casdm.losses import predicted_x0

    from saadi_core.diffusion.builders import build_noise_scheduler
    from saadi_core.diffusion.targets import training_target

    scheduler = build_noise_scheduler(prediction_type=kind)
    x0 = torch.rand(4, 3, 4, 4) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 10, 500, 990])
    x_t = scheduler.add_noise(x0, noise, t)
    assert torch.allclose(
        predicted_x0(scheduler, x_t, training_target(scheduler, x0, noise, t), t), x0, atol=2e-3
    )


def test_class_aware_perceptual_loss_by_hand() -> None:
    from saadi_casdm.losses import class_aware_perceptual_loss, class_weight_map

    weights = class_weight_map(torch.tensor([[[0, 0], [0, 1]]]), 2)  # 0.25 x3, 0.75
    reference = [torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 1, 1)]

    def features(
        x: torch.Tensor,
    ) -> list[torch.Tensor]:  # level 0 = the input, level 1 = 2 channels of its mean
        return [
            x,
            x.mean(dim=(2, 3), keepdim=True).expand(1, 2, 1, 1)
            * torch.tensor([1.0, 3.0]).view(1, 2, 1, 1),
        ]

    x = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]])
    # level 0: weighted mean of (1, 0, 0, 4) = 13/6; level 1: pooled weight 0.375, channels (0.75², 2.25²) -> mean 2.8125
    expected = (13 / 6 + (0.75**2 + 2.25**2) / 2) / 2
    assert float(class_aware_perceptual_loss(features, reference, x, weights)) == pytest.approx(
        expected
    )


def test_perceptual_features_pass_gradients_to_the_input_only() -> None:
    from saadi_casdm.losses import perceptual_features
    from saadi_casdm.network import SemanticUNet

    net = SemanticUNet(
        in_channels=3,
        out_channels=3,
        num_classes=2,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        attention_head_dim=8,
    )
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    t = torch.tensor([3, 700])
    features = perceptual_features(net, x, t)
    with torch.no_grad():
        plain = net.encoder_features(x, t)
    assert len(features) == 3 and all(torch.allclose(a, b) for a, b in zip(features, plain))
    sum(f.pow(2).sum() for f in features).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


# --------------------------------------------------------------------------- SPADE and the network


def test_mask_pyramid_keeps_a_one_pixel_class_at_coarse_levels() -> None:
    from saadi_casdm.spade import mask_input_channels, mask_pyramid_input, one_hot_masks

    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 5, 2] = 2
    one_hot = one_hot_masks(labels, 3)
    coarse = mask_pyramid_input(one_hot, 2, detail=4)  # 4x4 cells, space-to-depth by 4
    assert coarse.shape == (1, mask_input_channels(3, 4, 4), 2, 2) == (1, 48, 2, 2)
    assert float(coarse[0, 2 * 16 :].sum()) == 1.0  # class 2's single pixel survives
    capped = mask_pyramid_input(one_hot, 2, detail=2)  # 4x4 cells: area-pooled to 2x2, then depth 2
    assert capped.shape == (1, 12, 2, 2) and float(capped[0, 8:].sum()) == pytest.approx(0.25)
    assert torch.equal(mask_pyramid_input(one_hot, 8, detail=4), one_hot)


def test_spade_starts_as_plain_normalisation_and_then_reads_the_mask() -> None:
    from saadi_casdm.spade import MaskEncoder, SpatiallyAdaptiveNorm

    norm = SpatiallyAdaptiveNorm(channels=4, hidden_channels=3, groups=2)
    encoder = MaskEncoder(2, 3)
    x = torch.randn(2, 4, 5, 5)
    masks = torch.zeros(2, 2, 5, 5)
    masks[0, 0], masks[1, 1] = 1.0, 1.0
    features = encoder(masks)
    assert torch.allclose(
        norm(x, features), torch.nn.functional.group_norm(x, 2, eps=1e-6), atol=1e-6
    )
    torch.nn.init.normal_(norm.gamma.weight)
    torch.nn.init.normal_(norm.beta.weight)
    out = norm(torch.cat([x[:1], x[:1]]), features)
    assert not torch.allclose(out[0], out[1], atol=1e-3)  # same features, different masks


def test_network_decoder_reads_the_mask_and_lora_names_exist() -> None:
    from saadi_casdm.network import SemanticUNet

    torch.manual_seed(0)
    net = SemanticUNet(
        in_channels=12,
        out_channels=12,
        num_classes=3,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        mask_hidden_channels=4,
        mask_factor=2,
        attention_head_dim=8,
    )
    for module in net.modules():  # move SPADE off its zero init
        if hasattr(module, "gamma"):
            torch.nn.init.normal_(module.gamma.weight, std=0.1)
    x = torch.randn(1, 12, 4, 4)
    t = torch.tensor([10])
    a = torch.zeros(1, 8, 8, dtype=torch.long)
    b = a.clone()
    b[0, :4] = 2
    assert net(x, t, a).shape == x.shape
    assert not torch.allclose(net(x, t, a), net(x, t, b), atol=1e-4)
    names = {name.rsplit(".", 1)[-1] for name, _ in net.named_modules()}
    assert {"conv1", "conv2", "to_q", "to_k", "to_v", "gamma", "beta"} <= names
    assert any(name.endswith("to_out.0") for name, _ in net.named_modules())


# --------------------------------------------------------------------------- layout generator


def test_palette_and_nearest_colour_decoding() -> None:
    from saadi_casdm.layout import class_palette, decode_colours, encode_colours

    palette = class_palette(5)
    assert torch.equal(palette[0], torch.zeros(3)) and torch.equal(
        palette[1:].abs(), torch.ones(4, 3)
    )  # centre + corners
    assert torch.equal(palette[1], -palette[2])  # the second class opposite the first
    # a blend across any object's border with the background decodes to one of the two classes
    blend = torch.linspace(0, 1, 21)[:, None]
    for k in range(1, 5):
        segment = (blend * palette[k] + (1 - blend) * palette[0]).T[
            None, :, :, None
        ]  # (1, 3, 21, 1)
        assert set(decode_colours(segment, palette).unique().tolist()) == {0, k}
    big = class_palette(13)  # 3 levels per axis
    assert len({tuple(c) for c in big.tolist()}) == 13 and float(big.abs().max()) <= 1.0
    labels = torch.randint(0, 5, (2, 6, 6))
    colours = encode_colours(labels, palette)
    assert colours.shape == (2, 3, 6, 6)
    assert torch.equal(decode_colours(colours, palette), labels)
    assert torch.equal(
        decode_colours(colours * 0.6 + 0.1 * torch.randn_like(colours).clamp(-1, 1), palette),
        labels,
    )


def test_describe_mask_names_count_size_and_place() -> None:
    from saadi_casdm.layout import describe_mask, vocabulary_words

    mask = np.zeros((30, 30), dtype=np.int64)
    mask[0:3, 0:3] = 1  # 1 % of the image, top left
    mask[20:29, 20:29] = 2  # 9 % -> medium, bottom right
    mask[20:22, 1:3] = 2  # a second piece
    prompts = describe_mask(mask, ["background", "gall_bladder", "duct", "tool"])
    assert prompts == [
        "one background large middle centre",
        "one gall bladder small top left",
        "two duct medium bottom right",
        "no tool",
    ]
    vocabulary = set(vocabulary_words(["background", "gall_bladder", "duct", "tool"]))
    assert all(set(p.split()) <= vocabulary for p in prompts)


# --------------------------------------------------------------------------- training / conditions / sampling


def _fixed_loss(generator, dataset: Dataset) -> float:
    from saadi_core.diffusion.targets import training_target

    target = generator.diffusion_target()
    images = dataset.train.image_tensor()
    samples = [
        Sample(
            image=img,
            condition=Condition(id=f"r{i}", mask=torch.from_numpy(m)),
            generator="real",
            seed=0,
            index=i,
            mask=torch.from_numpy(m),
        )
        for i, (img, m) in enumerate(zip(images, dataset.train.masks))
    ]
    x0, cond = target.encode(samples)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 999, len(x0)).long()
    with torch.no_grad():
        prediction = target.predict(target.noise_scheduler.add_noise(x0, noise, t), t, cond)
    return float((prediction - training_target(target.noise_scheduler, x0, noise, t)).pow(2).mean())


def test_fit_lowers_the_loss_and_trains_both_models(
    registry: Registry, trained, dataset: Dataset
) -> None:
    assert (
        len(trained.history) == SMALL["max_steps"]
        and len(trained.layout_history) == SMALL["layout_max_steps"]
    )
    assert {"loss", "mse", "perceptual", "lr"} <= set(trained.history[0])
    untrained = registry.create(
        "generator", "casdm", {**SMALL, "max_steps": 0, "conditions": "training-masks"}
    )
    untrained.fit(dataset)  # same seed: the trained model's initial weights
    assert untrained.layout is None
    assert _fixed_loss(trained, dataset) < 0.8 * _fixed_loss(untrained, dataset)
    assert not any(p.requires_grad for p in trained.model.network.parameters())
    assert sum(p.numel() for p in trained.model.network.parameters()) < 200_000


def test_conditions_are_training_masks_then_generated_layouts(trained, dataset: Dataset) -> None:
    from saadi_casdm.layout import describe_mask

    conditions = trained.conditions(dataset)
    assert [c.id for c in conditions] == [c.id for c in trained.conditions(dataset)]
    masks, layouts = conditions[:3], conditions[3:]
    assert len(layouts) == 3
    longest = max(
        len(p.split()) for m in dataset.train.masks for p in describe_mask(m, dataset.class_names)
    )
    assert (
        trained.layout.model.tokenizer.model_max_length <= longest + 2
    )  # the vocabulary does not pad the prompts
    for m, lay in zip(masks, layouts):
        source = m.meta["source"]
        index = dataset.train.ids.index(source)
        assert m.id == f"mask:{source}" and torch.equal(
            m.mask, torch.from_numpy(dataset.train.masks[index])
        )
        assert lay.id == f"layout:{source}" and lay.meta["source"] == source
        assert lay.mask.dtype == torch.int64 and lay.mask.shape == (SIZE, SIZE)
        assert int(lay.mask.min()) >= 0 and int(lay.mask.max()) < dataset.num_classes
        assert lay.meta["prompts"] == describe_mask(dataset.train.masks[index], dataset.class_names)
    assert torch.equal(
        torch.stack([c.mask for c in layouts]),
        torch.stack([c.mask for c in trained.conditions(dataset)[3:]]),
    )


def test_samples_carry_their_mask_and_are_deterministic(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)[:3]
    samples = trained.sample(conditions, 2, seed=5)
    assert [(s.condition.id, s.index) for s in samples[:2]] == [
        (conditions[0].id, 0),
        (conditions[0].id, 1),
    ]
    for s in samples:
        assert s.image.shape == (3, SIZE, SIZE) and s.image.dtype == torch.float32
        assert float(s.image.min()) >= -1.0 and float(s.image.max()) <= 1.0
        assert s.generator == "casdm" and s.seed == 5 and torch.equal(s.mask, s.condition.mask)
    assert not torch.allclose(samples[0].image, samples[1].image, atol=1e-3)
    alone = trained.sample([conditions[2]], 2, seed=5)
    assert torch.equal(alone[1].image, samples[5].image)  # batch-independent
    bare = Condition(id="mask:user/0", mask=torch.from_numpy(dataset.test.masks[0]))
    assert trained.sample([bare], 1, seed=0)[0].image.equal(
        trained.sample([bare], 1, seed=0)[0].image
    )
    with pytest.raises(PipelineError, match="no mask"):
        trained.sample([Condition(id="x")], 1, seed=0)


def test_layout_conditions_need_a_layout_model(registry: Registry, dataset: Dataset) -> None:
    plain = registry.create(
        "generator", "casdm", {**SMALL, "max_steps": 1, "conditions": "training-masks"}
    )
    plain.fit(dataset)
    assert [c.id.split(":")[0] for c in plain.conditions(dataset)] == ["mask"] * 3
    plain.options = plain.options.model_copy(update={"conditions": "generated-layouts"})
    with pytest.raises(PipelineError, match="no layout model"):
        plain.conditions(dataset)


def test_layout_model_with_a_frozen_local_clip_text_encoder(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    from transformers import CLIPTextModel

    save_tiny_stable_diffusion(tmp_path / "sd")  # a locally written CLIP text encoder + tokenizer
    options = {
        **SMALL,
        "max_steps": 1,
        "conditions": "generated-layouts",
        "layout_max_steps": 2,
        "layout_text_encoder": str(tmp_path / "sd"),
    }
    generator = registry.create("generator", "casdm", options)
    generator.fit(dataset)
    encoder_dir = (tmp_path / "sd" / "text_encoder").resolve()
    text_encoder = generator.layout.model.text_encoder
    assert generator.layout.model.references["text_encoder"] == str(encoder_dir)
    reference = CLIPTextModel.from_pretrained(encoder_dir)
    assert all(
        torch.equal(a, b)
        for a, b in zip(text_encoder.state_dict().values(), reference.state_dict().values())
    )  # frozen
    assert generator.layout.model.unet.config.cross_attention_dim == reference.config.hidden_size
    layouts = generator.conditions(dataset)
    generator.save(tmp_path / "gen")
    assert not (tmp_path / "gen" / "layout" / "text_encoder").exists()  # referenced, not copied
    loaded = registry.create("generator", "casdm", options)
    loaded.load(tmp_path / "gen")
    assert torch.equal(
        torch.stack([c.mask for c in layouts]),
        torch.stack([c.mask for c in loaded.conditions(dataset)]),
    )
    with pytest.raises(DataError, match="tokenizer"):
        (tmp_path / "sd" / "tokenizer").rename(tmp_path / "sd" / "tok")
        registry.create("generator", "casdm", options).fit(dataset)


def test_losses_can_be_switched_off_for_ablation(registry: Registry, dataset: Dataset) -> None:
    sdm = registry.create(
        "generator",
        "casdm",
        {
            **SMALL,
            "max_steps": 2,
            "conditions": "training-masks",
            "class_aware_mse": False,
            "perceptual_weight": 0.0,
        },
    )
    sdm.fit(dataset)
    assert all("perceptual" not in h and h["loss"] == h["mse"] for h in sdm.history)


def test_save_load_and_pretrained_round_trip(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    trained.save(tmp_path / "gen")
    assert {p.name for p in (tmp_path / "gen").iterdir()} == {
        "casdm.json",
        "network",
        "scheduler",
        "autoencoder",
        "layout",
    }
    loaded = registry.create("generator", "casdm", SMALL)
    loaded.load(tmp_path / "gen")
    conditions = trained.conditions(dataset)
    assert [c.id for c in loaded.conditions(dataset)] == [c.id for c in conditions]
    assert torch.equal(
        stack_images(trained.sample(conditions, 1, seed=4)),
        stack_images(loaded.sample(conditions, 1, seed=4)),
    )

    # pretrained: start from the saved generator; with no further steps it samples the same images
    resumed = registry.create(
        "generator",
        "casdm",
        {**SMALL, "pretrained": str(tmp_path / "gen"), "max_steps": 0, "layout_max_steps": 0},
    )
    resumed.fit(dataset)
    assert torch.equal(
        stack_images(trained.sample(conditions, 1, seed=4)),
        stack_images(resumed.sample(conditions, 1, seed=4)),
    )
    from saadi_core.data.dataset import Split

    clipped = Split(
        images=dataset.train.images, ids=dataset.train.ids, masks=np.minimum(dataset.train.masks, 2)
    )
    other = Dataset(
        name="three", task="segmentation", class_names=["a", "b", "c"], train=clipped, test=clipped
    )
    with pytest.raises(ConfigError, match="5 classes"):
        registry.create("generator", "casdm", {**SMALL, "pretrained": str(tmp_path / "gen")}).fit(
            other
        )


def test_wrong_dataset_and_resolution_are_clear_errors(
    registry: Registry, dataset: Dataset
) -> None:
    classification = Dataset(
        name="cls", task="classification", class_names=["a"], train=dataset.train, test=dataset.test
    )
    with pytest.raises(ConfigError, match="segmentation"):
        registry.create("generator", "casdm", SMALL).fit(classification)
    with pytest.raises(ConfigError, match="resolution"):
        registry.create("generator", "casdm", {**SMALL, "resolution": 18}).fit(dataset)


# --------------------------------------------------------------------------- alignment / conformance


def test_diffusion_target_routes_through_the_trainable_module(trained, dataset: Dataset) -> None:
    target = trained.diffusion_target()
    samples = trained.sample(trained.conditions(dataset)[:2], 1, seed=0)
    x0, cond = target.encode(samples)
    assert x0.shape == (2, 12, SIZE // 2, SIZE // 2) and cond["labels"].shape == (2, SIZE, SIZE)
    assert torch.equal(cond["labels"][0], samples[0].mask)
    t = torch.tensor([100, 800])
    x_t = target.noise_scheduler.add_noise(x0, torch.randn_like(x0), t)
    before, after = perturbed_predictions(target, x_t, t, cond)
    assert not torch.allclose(before, after)
    assert target.trainable_module() is trained.model.network


def test_dpo_aligner_with_the_default_targets(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    from saadi_align.dpo import dpo_forward

    from saadi_core.conformance import check_aligner
    from saadi_core.diffusion.lora import attach_lora, lora_config

    generator = registry.create("generator", "casdm", SMALL)
    trained.save(tmp_path / "base")
    generator.load(tmp_path / "base")
    target = generator.diffusion_target()
    # LoRA at init (B = 0): the DPO loss is exactly ln 2, on the aligner's default tiny targets and ours
    for name, modules in (("tiny", None), ("own", target.lora_target_modules())):
        fresh = registry.create("generator", "casdm", SMALL)
        fresh.load(tmp_path / "base")
        view = fresh.diffusion_target()
        attach_lora(
            view.trainable_module(),
            lora_config(modules or ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"], 4),
            "saadi_dpo",
        )
        x0, cond = view.encode(trained.sample(trained.conditions(dataset)[:1], 2, seed=0))
        noise = torch.randn_like(x0[:1]).expand_as(x0)
        out = dpo_forward(view, x0, cond, noise, torch.tensor([500, 500]), beta=5000.0)
        assert float(out.loss) == pytest.approx(math.log(2), abs=1e-6), name
    aligner = registry.create("aligner", "diffusion-dpo", {"steps": 2, "batch_size": 2, "rank": 2})
    check_aligner(
        aligner,
        generator,
        dataset,
        n_per_condition=2,
        max_conditions=1,
        fit_generator=False,
        work_dir=tmp_path / "align",
    )


def test_conformance(registry: Registry, trained, dataset: Dataset, tmp_path: Path) -> None:
    from saadi_core.conformance import check_generator

    check_generator(trained, dataset, fit=False, work_dir=tmp_path)


def test_registration_is_lazy() -> None:
    code = (
        "import sys; import saadi_casdm.plugin; from saadi_core.registry import Registry; "
        "r = Registry.discover(only=['casdm']); e = r.get('generator', 'casdm'); "
        "assert e.task == 'segmentation' and e.profiles['paper']['sampling_steps'] == 30; "
        "e.build_options({}, 'paper'); assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
