"""The ``simuscope`` generator: the toy simulator and control images, simulator frames from the toy
renderer and from a user's folder (with its errors), the img2img schedule, the two training
stages, img2img sampling through the ControlNet (determinism, strength, guidance), persistence,
the DiffusionTarget view with the DPO aligner, the pretrained (paper) loading path, the
label-preservation mIoU, lazy registration and conformance.

Everything runs on 16 px toy-seg images with networks of a few 10k parameters; the trained
generator is shared by the module so training happens once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _diffusion_helpers import (
    LATENT_SMALL,
    SIZE,
    TINY_SD,
    guidance_scale,
    save_tiny_stable_diffusion,
    stack_images,
    toy_segmentation,
)
from PIL import Image

from saadi_core.data.dataset import Dataset
from saadi_core.errors import ConfigError, DataError, PipelineError
from saadi_core.interfaces import Condition, RunContext
from saadi_core.registry import Registry

SMALL = {
    **LATENT_SMALL,
    "max_steps": 30,
    "sampling_steps": 4,
    "n_conditions": 3,
    "style_steps": 6,
    "n_style_frames": 8,
    "style_rank": 2,
    "control_embedding_channels": 8,
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["simuscope", "align"])


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return toy_segmentation()


@pytest.fixture(scope="module")
def trained(registry: Registry, dataset: Dataset):
    generator = registry.create("generator", "simuscope", SMALL)
    generator.fit(dataset)
    return generator


def _copy(registry: Registry, generator, path: Path, **overrides):
    """A separate instance of ``generator`` (adapters and option changes stay out of the fixture)."""
    generator.save(path)
    copy = registry.create("generator", "simuscope", {**SMALL, **overrides})
    copy.load(path)
    return copy


# --------------------------------------------------------------------------- toy simulator, control


def test_renders_are_flat_exact_and_unlike_the_real_frames() -> None:
    from saadi_simuscope.simulator import palette, render

    from saadi_core.data.toy_seg import make_toy_seg

    data = make_toy_seg(
        seed=1, n_train=24, n_test=1
    )  # 64 px, the size the oracle is calibrated for
    masks = data.train.masks
    frames = render(masks, 5)
    assert frames.shape == (*masks.shape, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, render(masks, 5))  # nothing random
    # every pixel is its class's material times a brightness factor: the hue names the class
    colours = palette(5)
    chroma = frames / np.maximum(frames.sum(-1, keepdims=True), 1)
    nearest = np.argmin(
        np.abs(chroma[..., None, :] - (colours / colours.sum(-1, keepdims=True))).sum(-1), axis=-1
    )
    assert np.array_equal(nearest, masks)
    # the domain gap is real: the oracle passes the real frames, not the simulator's renders
    assert data.oracle.check(data.train.images, masks=masks).mean() > 0.8
    assert data.oracle.check(frames, masks=masks).mean() < 0.2
    assert palette(8).shape == (8, 3) and len(np.unique(palette(8), axis=0)) == 8


def test_control_images_frame_edges_and_labels() -> None:
    from saadi_simuscope.control import control_image
    from saadi_simuscope.simulator import palette, render

    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 4:12, 4:12] = 1
    frame = (
        torch.from_numpy(render(labels.numpy(), 5)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    )
    as_frame = control_image("frame", frame, labels, 5)
    assert torch.allclose(as_frame, (frame + 1) / 2)
    edges = control_image("edges", frame, labels, 5)
    assert (
        edges.shape == (1, 3, 16, 16)
        and 0.0 <= float(edges.min())
        and float(edges.max()) == pytest.approx(1.0)
    )
    border = torch.zeros(16, 16, dtype=torch.bool)
    border[3:13, 3:13] = True
    border[5:11, 5:11] = False
    assert float(edges[0, 0][border].mean()) > 2.0 * float(edges[0, 0][~border].mean())
    coded = control_image("labels", frame, labels, 5)
    assert torch.allclose(coded[0, :, 8, 8], torch.from_numpy(palette(5)[1] / 255.0))
    with pytest.raises(ValueError, match="control_input"):
        control_image("depth", frame, labels, 5)


# --------------------------------------------------------------------------- conditions


def test_toy_conditions_are_renders_of_training_masks(registry: Registry, dataset: Dataset) -> None:
    from saadi_simuscope.simulator import render

    generator = registry.create("generator", "simuscope", SMALL)  # conditions need no weights
    conditions = generator.conditions(dataset)
    assert len(conditions) == 3 and [c.id for c in conditions] == [
        c.id for c in generator.conditions(dataset)
    ]
    for c in conditions:
        index = dataset.train.ids.index(c.meta["source"])
        assert c.id == f"sim:{dataset.train.ids[index]}"
        assert c.mask.dtype == torch.int64 and torch.equal(
            c.mask, torch.from_numpy(dataset.train.masks[index])
        )
        frame = (
            torch.from_numpy(render(dataset.train.masks[index : index + 1], 5)[0])
            .permute(2, 0, 1)
            .float()
            / 127.5
            - 1
        )
        assert torch.equal(c.control, frame)
    flipped = registry.create("generator", "simuscope", {**SMALL, "flip_copies": 2}).conditions(
        dataset
    )
    assert [c.id for c in flipped[:3]] == [
        conditions[0].id,
        f"{conditions[0].id}#flipx",
        f"{conditions[0].id}#flipy",
    ]
    assert torch.equal(flipped[1].mask, conditions[0].mask.flip(-1)) and torch.equal(
        flipped[2].control, conditions[0].control.flip(-2)
    )
    every = registry.create("generator", "simuscope", {**SMALL, "n_conditions": None}).conditions(
        dataset
    )
    assert len(every) == len(dataset.train)


def _write_simulator_dir(root: Path, dataset: Dataset, n: int = 3, colours: bool = True) -> Path:
    """Frames (the toy renders, at 2x the dataset size) and palette-PNG or index masks."""
    from saadi_simuscope.simulator import render

    (root / "frames").mkdir(parents=True)
    (root / "masks").mkdir()
    masks = dataset.train.masks[:n]
    big = np.kron(masks, np.ones((2, 2), dtype=np.int64))
    flat = [0, 0, 0, 0, 200, 0, 200, 200, 0, 200, 0, 0, 0, 0, 200]
    if colours:
        names = ["background", "gallbladder", "cystic_duct", "cystic_artery", "tool"]
        (root / "classes.yaml").write_text(
            "".join(
                f"{name}: [{flat[3 * k]}, {flat[3 * k + 1]}, {flat[3 * k + 2]}]\n"
                for k, name in enumerate(names)
            )
        )
    for i, (frame, mask) in enumerate(zip(render(big, 5), big)):
        Image.fromarray(frame).save(root / "frames" / f"f{i}.png")
        labels = Image.fromarray(mask.astype(np.uint8), mode="P" if colours else "L")
        if colours:
            labels.putpalette(flat)
        labels.save(root / "masks" / f"f{i}.png")
    return root


@pytest.mark.parametrize("colours", [True, False])
def test_simulator_folder_becomes_conditions(
    registry: Registry, dataset: Dataset, tmp_path: Path, colours: bool
) -> None:
    root = _write_simulator_dir(tmp_path / "sim", dataset, colours=colours)
    generator = registry.create(
        "generator", "simuscope", {**SMALL, "simulator_dir": str(root), "n_conditions": None}
    )
    conditions = generator.conditions(dataset)
    assert [c.id for c in conditions] == ["sim:f0", "sim:f1", "sim:f2"]
    for i, c in enumerate(conditions):
        assert torch.equal(
            c.mask, torch.from_numpy(dataset.train.masks[i])
        )  # resized back, ids kept
        assert c.control.shape == (3, SIZE, SIZE) and float(c.control.min()) >= -1.0


def test_bad_simulator_folders_are_one_line_errors_naming_the_file(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    def conditions(root: Path):
        return registry.create(
            "generator", "simuscope", {**SMALL, "simulator_dir": str(root)}
        ).conditions(dataset)

    with pytest.raises(DataError, match="simulator folder not found"):
        conditions(tmp_path / "nowhere")
    root = _write_simulator_dir(tmp_path / "a", dataset, colours=False)
    (root / "masks" / "f1.png").unlink()
    with pytest.raises(DataError, match=r"no label mask for simulator frame .*f1\.png"):
        conditions(root)
    root = _write_simulator_dir(tmp_path / "b", dataset, colours=False)
    Image.fromarray(np.full((2 * SIZE, 2 * SIZE), 9, np.uint8), mode="L").save(
        root / "masks" / "f2.png"
    )
    with pytest.raises(DataError, match=r"f2\.png has value 9") as info:
        conditions(root)
    assert "\n" not in str(info.value)
    root = _write_simulator_dir(tmp_path / "c", dataset)
    (root / "classes.yaml").write_text("background: [0, 0, 0]\nliver: [0, 200, 0]\n")
    with pytest.raises(DataError, match="class 'liver' is not a class of dataset"):
        conditions(root)
    # fit checks the folder before any training
    generator = registry.create(
        "generator", "simuscope", {**SMALL, "simulator_dir": str(root), "max_steps": 10_000}
    )
    with pytest.raises(DataError, match="liver"):
        generator.fit(dataset)


def test_a_classification_dataset_is_refused(registry: Registry, dataset: Dataset) -> None:
    classification = Dataset(
        name="cls", task="classification", class_names=["a"], train=dataset.train, test=dataset.test
    )
    with pytest.raises(ConfigError, match="segmentation"):
        registry.create("generator", "simuscope", SMALL).fit(classification)


# --------------------------------------------------------------------------- img2img schedule


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver++"])
def test_strength_keeps_the_last_share_of_the_schedule(sampler: str) -> None:
    from saadi_simuscope.img2img import StrengthSchedule

    from saadi_core.diffusion.builders import build_noise_scheduler
    from saadi_core.diffusion.sampling import build_sampling_scheduler

    config = build_noise_scheduler(prediction_type="sample").config
    full = build_sampling_scheduler(config, sampler)
    full.set_timesteps(8)
    schedule = StrengthSchedule(build_sampling_scheduler(config, sampler), 0.5)
    latents, noise = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    start = schedule.start(latents, noise, 8)
    assert torch.equal(schedule.timesteps, full.timesteps[4:])
    alpha = full.alphas_cumprod[int(full.timesteps[4])] if sampler == "ddim" else None
    if alpha is not None:
        assert torch.allclose(start, torch.full_like(start, float((1 - alpha).sqrt())))
    whole = StrengthSchedule(build_sampling_scheduler(config, sampler), 1.0)
    whole.set_timesteps(8)
    assert torch.equal(whole.timesteps, full.timesteps)
    assert StrengthSchedule(full, 0.01).steps_run(8) == 1
    with pytest.raises(ValueError):
        StrengthSchedule(full, 0.0)


# --------------------------------------------------------------------------- training


def test_training_runs_both_stages_and_leaves_one_plain_network(trained, dataset: Dataset) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    stages = [h["stage"] for h in trained.history]
    assert stages == ["control"] * SMALL["max_steps"] + ["style"] * SMALL["style_steps"]
    control = [h["loss"] for h in trained.history if h["stage"] == "control"]
    assert np.mean(control[-5:]) < 0.8 * np.mean(control[:5])
    network = trained.network
    assert network.unet is trained.model.unet
    assert not any(
        isinstance(m, BaseTunerLayer) for m in network.modules()
    )  # the style LoRA is fused
    assert not getattr(network.unet, "peft_config", None)
    assert not any(p.requires_grad for p in network.parameters())
    # the ControlNet learnt: its zero-initialised output convolutions moved
    assert float(network.controlnet.controlnet_mid_block.weight.abs().sum()) > 0


def test_prompt_rows_are_gathered_with_a_deterministic_backward() -> None:
    from saadi_simuscope.training import gather_rows

    table = torch.randn(3, 17, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    rows = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(1))
    weight = torch.linspace(-1, 1, 32 * 17 * 64).view(32, 17, 64)

    def gradient(gather) -> torch.Tensor:
        table.grad = None
        (gather(table, rows) * weight).sum().backward()
        return table.grad.clone()

    assert torch.equal(gather_rows(table, rows), table[rows])
    grads = [gradient(gather_rows) for _ in range(3)]
    assert all(torch.equal(grads[0], g) for g in grads[1:])  # bit-identical every time
    assert torch.allclose(grads[0], gradient(lambda t, r: t[r]), atol=1e-4)


def test_style_stage_adapts_the_targeted_layers_and_fuses(dataset: Dataset) -> None:
    from saadi_simuscope.options import SimuScopeOptions
    from saadi_simuscope.training import train_style

    from saadi_core.diffusion.builders import make_accelerator
    from saadi_core.diffusion.latent import build_from_config

    options = SimuScopeOptions(
        **{
            **SMALL,
            "style_steps": 3,
            "style_target_modules": ["conv1", "conv2"],
            "style_learning_rate": 0.05,
        }
    )
    model = build_from_config(options, ["a frame showing gallbladder"], SIZE, name="simuscope")
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    history = train_style(
        model,
        dataset.train.images[:4],
        np.zeros(4, dtype=np.int64),
        ["a frame showing gallbladder"],
        options,
        make_accelerator(None, "cpu", "no"),
        RunContext().progress,
    )
    assert len(history) == 3
    after = model.unet.state_dict()
    assert set(after) == set(before)  # fused: no LoRA weights left, same layout as the base
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".conv1." in k or ".conv2." in k for k in changed)


# --------------------------------------------------------------------------- sampling


def test_samples_keep_the_simulator_label(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)
    samples = trained.sample(conditions, 2, seed=5)
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
        assert s.seed == 5 and s.generator == "simuscope"
        assert s.mask.dtype == torch.int64 and torch.equal(s.mask, s.condition.mask)
    assert not torch.allclose(samples[0].image, samples[1].image, atol=1e-3)


def test_sampling_is_deterministic_and_batch_independent(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)
    full = trained.sample(conditions, 3, seed=11)
    assert torch.equal(stack_images(full), stack_images(trained.sample(conditions, 3, seed=11)))
    alone = trained.sample([conditions[2]], 2, seed=11)
    assert torch.equal(alone[1].image, full[2 * 3 + 1].image)
    assert not torch.allclose(
        stack_images(full), stack_images(trained.sample(conditions, 3, seed=12)), atol=1e-3
    )


def test_strength_sets_how_much_of_the_frame_survives(trained, dataset: Dataset) -> None:
    conditions = trained.conditions(dataset)
    frames = torch.stack([c.control for c in conditions])

    def distance(strength: float) -> float:
        previous = trained.options.strength
        trained.options.strength = strength
        try:
            return float(
                (
                    stack_images(trained.sample(conditions, 2, seed=3))
                    - frames.repeat_interleave(2, 0)
                )
                .abs()
                .mean()
            )
        finally:
            trained.options.strength = previous

    assert distance(0.25) < distance(1.0)


def test_the_controlnet_and_the_prompt_steer_the_samples(trained, dataset: Dataset) -> None:
    condition = trained.conditions(dataset)[0]
    plain = trained.sample([condition], 1, seed=2)[0].image
    with guidance_scale(trained, 3.0):
        assert not torch.allclose(trained.sample([condition], 1, seed=2)[0].image, plain, atol=1e-4)
    previous = trained.options.control_scale
    trained.options.control_scale = 0.0
    try:
        uncontrolled = trained.sample([condition], 1, seed=2)[0].image
    finally:
        trained.options.control_scale = previous
    assert not torch.allclose(uncontrolled, plain, atol=1e-4)
    # a condition with a label only is rendered by the toy simulator: the same frame as the toy conditions
    bare = Condition(id=condition.id, mask=condition.mask)
    assert torch.equal(trained.sample([bare], 1, seed=2)[0].image, plain)
    with pytest.raises(PipelineError, match="no simulator label"):
        trained.sample([Condition(id="sim:x", control=condition.control)], 1, seed=0)


def test_scene_prompts_list_the_classes_the_label_shows(trained) -> None:
    assert (
        trained.scene_prompt([0, 1, 2, 4])
        == "a realistic laparoscopic cholecystectomy frame showing gallbladder, cystic duct and tool"
    )
    assert trained.scene_prompt([0, 3]).endswith("showing cystic artery")
    assert trained.scene_prompt([0]).endswith("showing background")
    tokens = trained.model.tokenizer(trained.scene_prompt([0, 1, 2, 3, 4])).input_ids
    assert (
        trained.model.tokenizer.unk_token_id not in tokens
    )  # the tiny vocabulary covers every scene prompt


# --------------------------------------------------------------------------- persistence


def test_save_load_round_trip_reproduces_samples(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    trained.save(tmp_path / "gen")
    assert {p.name for p in (tmp_path / "gen").iterdir()} == {
        "simuscope.json",
        "unet",
        "text_encoder",
        "tokenizer",
        "scheduler",
        "autoencoder",
        "controlnet",
    }
    meta = json.loads((tmp_path / "gen" / "simuscope.json").read_text())
    assert (
        meta["class_names"] == dataset.class_names
        and meta["control_input"] == "edges"
        and meta["controlnet_reference"] is None
    )
    loaded = registry.create("generator", "simuscope", SMALL)
    loaded.load(tmp_path / "gen")
    conditions = trained.conditions(dataset)
    assert torch.equal(
        stack_images(trained.sample(conditions, 2, seed=4)),
        stack_images(loaded.sample(conditions, 2, seed=4)),
    )
    with pytest.raises(ConfigError, match="control_input='edges'"):
        registry.create("generator", "simuscope", {**SMALL, "control_input": "labels"}).load(
            tmp_path / "gen"
        )


# --------------------------------------------------------------------------- diffusion target / DPO


def test_diffusion_target_encodes_and_predicts_through_the_chosen_network(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    from saadi_simuscope.control import control_image
    from saadi_simuscope.network import ControlledUNet

    samples = trained.sample(trained.conditions(dataset), 1, seed=1)
    target = trained.diffusion_target()
    x0, cond = target.encode(samples)
    c, h = 3 * SMALL["unshuffle_factor"] ** 2, SIZE // SMALL["unshuffle_factor"]
    assert x0.shape == (3, c, h, h)
    assert torch.equal(
        x0[0], torch.nn.functional.pixel_unshuffle(samples[0].image[None], 2)[0]
    )  # lossless
    assert set(cond) == {"encoder_hidden_states", "control"} and cond["control"].shape == (
        3,
        3,
        SIZE,
        SIZE,
    )
    condition = samples[0].condition
    assert torch.equal(
        cond["control"][0],
        control_image("edges", condition.control[None], condition.mask[None], 5)[0],
    )
    assert torch.equal(
        cond["encoder_hidden_states"][0],
        trained.embed_prompts([trained.label_prompt(condition.mask)])[0],
    )
    assert isinstance(target.trainable_module(), ControlledUNet)

    t = torch.tensor([10, 500, 900])
    x_t = target.noise_scheduler.add_noise(x0, torch.randn_like(x0), t)
    for choice, weight_of in (
        ("unet", lambda m: m.conv_out.weight),
        ("controlnet", lambda m: m.controlnet_mid_block.weight),
    ):
        copy = _copy(registry, trained, tmp_path / choice, dpo_network=choice)
        view = copy.diffusion_target()
        module = view.trainable_module()
        assert module is getattr(copy.network, choice)
        with torch.no_grad():
            before = view.predict(x_t, t, cond)
            weight_of(module).add_(0.05)
            assert not torch.allclose(view.predict(x_t, t, cond), before)


def test_conformance_generator_and_dpo_aligner(
    registry: Registry, trained, dataset: Dataset, tmp_path: Path
) -> None:
    from saadi_core.conformance import check_aligner, check_generator

    check_generator(trained, dataset, fit=False, work_dir=tmp_path / "generator")
    copy = _copy(registry, trained, tmp_path / "copy")  # the aligner adapts in place
    aligner = registry.create("aligner", "diffusion-dpo", {"steps": 3, "batch_size": 2, "rank": 2})
    check_aligner(
        aligner,
        copy,
        dataset,
        n_per_condition=2,
        fit_generator=False,
        work_dir=tmp_path / "aligner",
    )
    # the adapters sit in both networks, and the base is refused as a save target while they are on
    layers = {
        name.split(".")[0] for name, _ in copy.network.named_modules() if name.endswith("lora_A")
    }
    assert layers == {"unet", "controlnet"}
    with pytest.raises(PipelineError, match="adapters"):
        copy.save(tmp_path / "with-adapters")


# --------------------------------------------------------------------------- pretrained (paper) path


def _tiny_sd_with_controlnet(tmp_path: Path) -> tuple[Path, Path]:
    from saadi_core.diffusion.miniature import save_controlnet

    sd, cn = tmp_path / "sd", tmp_path / "controlnet"
    save_tiny_stable_diffusion(sd)
    save_controlnet(cn, sd, TINY_SD)  # a "pretrained" ControlNet: non-zero output convolutions
    return sd, cn


def test_pretrained_sd_and_controlnet_load_style_and_sample(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    sd, cn = _tiny_sd_with_controlnet(tmp_path)
    options = {
        "pretrained": str(sd),
        "controlnet": str(cn),
        "resolution": SIZE,
        "style_steps": 2,
        "style_rank": 2,
        "batch_size": 2,
        "gradient_checkpointing": False,
        "sampling_steps": 2,
        "sample_batch_size": 2,
        "n_conditions": 1,
    }
    generator = registry.create("generator", "simuscope", options, profile="paper")
    assert generator.options.control_input == "edges" and generator.options.max_steps == 0
    loaded_controlnet = (cn / "diffusion_pytorch_model.safetensors").read_bytes()
    generator.fit(dataset)
    assert [h["stage"] for h in generator.history] == ["style", "style"]
    assert (
        generator.model.noise_scheduler.config.prediction_type == "epsilon"
    )  # kept from the directory
    condition = generator.conditions(dataset)
    sample = generator.sample(condition, 1, seed=0)[0]
    assert sample.image.shape == (3, SIZE, SIZE) and torch.isfinite(sample.image).all()
    x0, cond = generator.diffusion_target().encode([sample])
    assert x0.shape == (1, 4, SIZE // 2, SIZE // 2) and cond["control"].shape == (1, 3, SIZE, SIZE)

    generator.save(tmp_path / "saved")
    saved = tmp_path / "saved"
    assert (
        not (saved / "controlnet").exists() and not (saved / "text_encoder").exists()
    )  # frozen parts referenced
    assert json.loads((saved / "simuscope.json").read_text())["controlnet_reference"] == str(
        cn.resolve()
    )
    assert (
        cn / "diffusion_pytorch_model.safetensors"
    ).read_bytes() == loaded_controlnet  # never written to
    reloaded = registry.create("generator", "simuscope", options, profile="paper")
    reloaded.load(saved)
    assert torch.equal(reloaded.sample(condition, 1, seed=0)[0].image, sample.image)


def test_pretrained_controlnet_errors(registry: Registry, dataset: Dataset, tmp_path: Path) -> None:
    from saadi_core.registry import OptionsError

    sd, _ = _tiny_sd_with_controlnet(tmp_path)
    with pytest.raises(OptionsError, match="set 'controlnet'"):
        registry.create("generator", "simuscope", {"pretrained": str(sd)}, profile="paper")
    generator = registry.create(
        "generator",
        "simuscope",
        {"pretrained": str(sd), "controlnet": str(tmp_path / "none")},
        profile="paper",
    )
    with pytest.raises(DataError, match="no diffusers ControlNet"):
        generator.fit(dataset)
    from diffusers import ControlNetModel, UNet2DConditionModel

    wrong = ControlNetModel.from_unet(
        UNet2DConditionModel.from_pretrained(sd / "unet"),
        conditioning_embedding_out_channels=(8, 16, 32),
    )
    wrong.save_pretrained(tmp_path / "wrong")
    generator = registry.create(
        "generator",
        "simuscope",
        {"pretrained": str(sd), "controlnet": str(tmp_path / "wrong")},
        profile="paper",
    )
    with pytest.raises(ConfigError, match="4x the latent size"):
        generator.fit(dataset)


# --------------------------------------------------------------------------- registration


def test_registration_is_lazy() -> None:
    code = (
        "import sys\n"
        "import saadi_simuscope.plugin\n"
        "from saadi_core.registry import Registry\n"
        "r = Registry.discover(only=['simuscope'])\n"
        "entry = r.get('generator', 'simuscope')\n"
        "assert entry.plugin == 'simuscope' and entry.task == 'segmentation', entry\n"
        "paper = entry.build_options({'controlnet': '/models/cn'}, 'paper')\n"
        "assert (paper.style_rank, paper.control_input, paper.max_steps) == (128, 'edges', 0)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
