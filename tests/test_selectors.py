"""Selector plugins: timm classifiers and smp segmenters on tiny synthetic tasks built here."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from saadi_selectors.augment import AugmentConfig, augment_batch
from saadi_selectors.classifiers import ResNet18Selector
from saadi_selectors.metrics import evaluate
from saadi_selectors.options import ClassifierOptions, SegformerOptions
from saadi_selectors.segmenters import SegformerSelector, dice_per_sample
from saadi_selectors.training import class_weights

from saadi_core.data.dataset import Dataset, Split
from saadi_core.errors import ConfigError, DataError
from saadi_core.interfaces import Condition, RunContext, Sample
from saadi_core.registry import Registry

CLASSIFIERS = ["resnet18", "resnet50", "convnext_small", "vit_small"]
SEGMENTERS = ["segformer", "deeplabv3", "deeplabv3plus", "upernet", "unet"]


# --------------------------------------------------------------------------- tiny tasks


def colour_split(rng: np.random.Generator, n: int, size: int, prefix: str) -> Split:
    """3 classes: a square whose dominant channel (R, G or B) is the class, on grey noise."""
    labels = np.arange(n) % 3
    images = rng.integers(90, 140, size=(n, size, size, 3))
    for i, label in enumerate(labels):
        s = size // 2
        x, y = rng.integers(0, size - s, 2)
        images[i, y : y + s, x : x + s] = 50
        images[i, y : y + s, x : x + s, label] = 220
    return Split(
        images=images.astype(np.uint8),
        ids=[f"{prefix}/{i}" for i in range(n)],
        labels=labels.astype(np.int64),
    )


def blob_split(rng: np.random.Generator, n: int, size: int, prefix: str) -> Split:
    """Background + a red rectangle (class 1) in every image + a blue one (class 2) in half."""
    images = rng.integers(30, 80, size=(n, size, size, 3))
    masks = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        for c, colour in ((1, (220, 60, 60)), (2, (60, 60, 220))):
            if c == 2 and i % 2:
                continue
            h, w = rng.integers(size // 4, size // 2, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            images[i, y : y + h, x : x + w] = colour
            masks[i, y : y + h, x : x + w] = c
    return Split(
        images=images.astype(np.uint8), ids=[f"{prefix}/{i}" for i in range(n)], masks=masks
    )


def colour_dataset(size: int = 16, n_train: int = 96, n_test: int = 48) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        "colours",
        "classification",
        ["red", "green", "blue"],
        colour_split(rng, n_train, size, "train"),
        colour_split(rng, n_test, size, "test"),
    )


def blob_dataset(size: int = 32, n_train: int = 64, n_test: int = 24) -> Dataset:
    rng = np.random.default_rng(1)
    return Dataset(
        "blobs",
        "segmentation",
        ["background", "red", "blue"],
        blob_split(rng, n_train, size, "train"),
        blob_split(rng, n_test, size, "test"),
    )


def samples_from(
    split: Split, class_ids: list[int] | None = None, masks: torch.Tensor | None = None
) -> list[Sample]:
    images = split.image_tensor()
    out = []
    for i in range(len(split)):
        cid = None if class_ids is None else int(class_ids[i])
        mask = None if masks is None else masks[i]
        out.append(
            Sample(
                image=images[i],
                condition=Condition(id=f"c{i}", class_id=cid, mask=mask),
                generator="test",
                seed=0,
                index=i,
                mask=mask,
            )
        )
    return out


def fast_cls(**overrides) -> ClassifierOptions:
    return ClassifierOptions(**({"epochs": 3, "batch_size": 16, "lr": 3e-3} | overrides))


def fast_seg(**overrides) -> SegformerOptions:
    return SegformerOptions(**({"epochs": 6, "batch_size": 16, "lr": 3e-3} | overrides))


@pytest.fixture(scope="module")
def cls_data() -> Dataset:
    return colour_dataset()


@pytest.fixture(scope="module")
def seg_data() -> Dataset:
    return blob_dataset()


@pytest.fixture(scope="module")
def classifier(cls_data: Dataset) -> ResNet18Selector:
    selector = ResNet18Selector(fast_cls())
    selector.fit(cls_data)
    return selector


@pytest.fixture(scope="module")
def segmenter(seg_data: Dataset) -> SegformerSelector:
    selector = SegformerSelector(fast_seg())
    selector.fit(seg_data)
    return selector


# --------------------------------------------------------------------------- classification


def test_classifier_beats_chance_and_scores_the_intended_class(
    classifier: ResNet18Selector, cls_data: Dataset
):
    metrics = evaluate(classifier, cls_data.test, cls_data.class_names)
    assert metrics["task"] == "classification" and metrics["n"] == len(cls_data.test)
    assert metrics["accuracy"] > 0.6, metrics  # chance is 1/3
    labels = cls_data.test.labels
    matching = classifier.score(samples_from(cls_data.test, list(labels)))
    mismatched = classifier.score(samples_from(cls_data.test, list((labels + 1) % 3)))
    assert len(matching) == len(cls_data.test) and all(
        0.0 <= s <= 1.0 for s in matching + mismatched
    )
    assert np.mean(matching) > np.mean(mismatched) + 0.2
    assert np.mean(np.array(matching) > np.array(mismatched)) > 0.7


def test_classifier_save_load_round_trip(
    classifier: ResNet18Selector, cls_data: Dataset, tmp_path: Path
):
    classifier.save(tmp_path / "model")
    restored = ResNet18Selector(fast_cls())
    restored.load(tmp_path / "model")
    images = cls_data.test.image_tensor()
    assert torch.equal(restored.predict(images), classifier.predict(images))
    assert torch.allclose(restored.probabilities(images), classifier.probabilities(images))
    assert restored.class_names == cls_data.class_names
    samples = samples_from(cls_data.test, list(cls_data.test.labels))
    assert restored.score(samples) == classifier.score(samples)


def test_training_is_deterministic_for_a_seed(cls_data: Dataset):
    small = Dataset(
        "small",
        "classification",
        cls_data.class_names,
        cls_data.train.subset(list(range(32))),
        cls_data.test,
    )

    def train(seed: int) -> torch.Tensor:
        selector = ResNet18Selector(fast_cls(epochs=1, seed=seed))
        selector.fit(small)
        return selector.logits(cls_data.test.image_tensor(slice(0, 8)))

    first = train(3)
    assert torch.equal(first, train(3))
    assert not torch.equal(first, train(4))


def test_extra_samples_teach_a_class_missing_from_the_real_split(cls_data: Dataset):
    train = cls_data.train
    keep = np.flatnonzero(train.labels != 2)  # no real "blue" image
    real_only = Dataset(
        "no-blue", "classification", cls_data.class_names, train.subset(keep), cls_data.test
    )
    blue = np.flatnonzero(train.labels == 2)
    extra = samples_from(train.subset(blue), [2] * len(blue))
    selector = ResNet18Selector(fast_cls(epochs=3))
    selector.fit(real_only, extra=extra)
    test_blue = cls_data.test.subset(np.flatnonzero(cls_data.test.labels == 2))
    assert (selector.predict(test_blue.image_tensor()) == 2).float().mean() > 0.5


def test_classifier_score_needs_class_ids(classifier: ResNet18Selector, cls_data: Dataset):
    with pytest.raises(DataError, match="class_id None"):
        classifier.score(samples_from(cls_data.test.subset([0])))
    with pytest.raises(DataError, match="class_id 7"):
        classifier.score(samples_from(cls_data.test.subset([0]), [7]))


def test_wrong_task_is_a_clear_error(cls_data: Dataset, seg_data: Dataset):
    with pytest.raises(
        ConfigError,
        match="classification model but dataset 'blobs' is a segmentation dataset.*segformer",
    ):
        ResNet18Selector(fast_cls()).fit(seg_data)
    with pytest.raises(ConfigError, match="segmentation model but dataset 'colours'"):
        SegformerSelector(fast_seg()).fit(cls_data)


def test_pretrained_path_loads_a_local_timm_checkpoint(cls_data: Dataset, tmp_path: Path):
    import timm

    torch.manual_seed(123)
    source = timm.create_model(
        "resnet18", pretrained=False, num_classes=10
    )  # head differs from 3 classes
    wrapped = {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 5}
    torch.save(wrapped, tmp_path / "checkpoint.pth")
    small = Dataset(
        "small",
        "classification",
        cls_data.class_names,
        cls_data.train.subset(list(range(16))),
        cls_data.test,
    )
    # lr ~ 0 and no decay: the weights after fit are the loaded ones
    selector = ResNet18Selector(
        fast_cls(epochs=1, lr=1e-12, weight_decay=0.0, pretrained_path=tmp_path / "checkpoint.pth")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        selector.fit(small)
    loaded = selector.model.state_dict()
    assert torch.allclose(loaded["conv1.weight"], source.state_dict()["conv1.weight"], atol=1e-6)
    assert torch.allclose(
        loaded["layer4.1.conv2.weight"], source.state_dict()["layer4.1.conv2.weight"], atol=1e-6
    )
    assert loaded["fc.weight"].shape == (3, 512)  # fresh head for the dataset's classes

    # a saved selector directory is a valid source too
    selector.save(tmp_path / "saved")
    again = ResNet18Selector(
        fast_cls(epochs=1, lr=1e-12, weight_decay=0.0, pretrained_path=tmp_path / "saved")
    )
    again.fit(small)
    assert torch.allclose(
        again.model.state_dict()["conv1.weight"], loaded["conv1.weight"], atol=1e-6
    )


def test_pretrained_path_errors(cls_data: Dataset, tmp_path: Path):
    import segmentation_models_pytorch as smp

    torch.save(
        smp.Segformer(encoder_name="mit_b0", encoder_weights=None, classes=2).state_dict(),
        tmp_path / "segformer.pt",
    )
    for path, message in [
        (tmp_path / "segformer.pt", "does not fit timm model 'resnet18'"),
        (tmp_path / "missing.pt", "does not exist"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ResNet18Selector(fast_cls(pretrained_path=path)).fit(cls_data)


def test_vit_pretrained_weights_are_resampled_to_the_dataset_size(tmp_path: Path):
    import timm

    source = timm.create_model(
        "vit_small_patch16_224", pretrained=False, num_classes=7
    )  # 224 px, 16-px patches
    torch.save(source.state_dict(), tmp_path / "vit.pt")
    data = colour_dataset(size=16, n_train=8, n_test=4)
    registry = Registry.discover(only=["selectors"])
    selector = registry.create(
        "selector",
        "vit_small",
        {
            "epochs": 1,
            "batch_size": 4,
            "lr": 1e-12,
            "weight_decay": 0.0,
            "patch_size": 8,
            "pretrained_path": str(tmp_path / "vit.pt"),
        },
    )
    selector.fit(data)
    state = selector.model.state_dict()
    assert state["pos_embed"].shape == (1, 1 + 4, 384) and state[
        "patch_embed.proj.weight"
    ].shape == (384, 3, 8, 8)
    assert torch.allclose(
        state["blocks.3.attn.qkv.weight"],
        source.state_dict()["blocks.3.attn.qkv.weight"],
        atol=1e-6,
    )


# --------------------------------------------------------------------------- segmentation


def test_segmenter_learns_an_easy_task_and_scores_by_dice(
    segmenter: SegformerSelector, seg_data: Dataset
):
    metrics = evaluate(segmenter, seg_data.test, seg_data.class_names)
    assert metrics["task"] == "segmentation"
    assert metrics["mean_dice"] > 0.6, metrics  # predicting background everywhere scores 0
    masks = torch.from_numpy(seg_data.test.masks)
    pred = segmenter.predict(seg_data.test.image_tensor())
    assert pred.shape == masks.shape and pred.dtype == torch.int64
    matching = segmenter.score(samples_from(seg_data.test, masks=masks))
    wrong = segmenter.score(
        samples_from(seg_data.test, masks=torch.roll(masks, shifts=1, dims=0))
    )  # another image's mask
    assert len(matching) == len(seg_data.test) and all(0.0 <= s <= 1.0 for s in matching + wrong)
    assert np.mean(matching) > np.mean(wrong) + 0.3


def test_segmenter_save_load_round_trip(
    segmenter: SegformerSelector, seg_data: Dataset, tmp_path: Path
):
    segmenter.save(tmp_path / "seg")
    restored = SegformerSelector(fast_seg())
    restored.load(tmp_path / "seg")
    images = seg_data.test.image_tensor()
    assert torch.equal(restored.predict(images), segmenter.predict(images))
    with pytest.raises(ConfigError, match="not 'resnet18'"):
        ResNet18Selector(fast_cls()).load(tmp_path / "seg")
    with pytest.raises(DataError, match="holds no saved selector"):
        restored.load(tmp_path)


def test_segmenter_score_needs_a_mask(segmenter: SegformerSelector, seg_data: Dataset):
    with pytest.raises(DataError, match="has no mask"):
        segmenter.score(samples_from(seg_data.test.subset([0])))


def test_segmenter_pads_sizes_that_are_not_multiples_of_32():
    data = blob_dataset(size=24, n_train=8, n_test=4)
    selector = SegformerSelector(fast_seg(epochs=1, batch_size=4))
    selector.fit(data)
    assert selector.predict(data.test.image_tensor()).shape == (4, 24, 24)


def test_segmenter_pretrained_path_takes_encoder_or_whole_model_weights(
    segmenter: SegformerSelector, seg_data: Dataset, tmp_path: Path
):
    import segmentation_models_pytorch as smp

    small = Dataset(
        "small",
        "segmentation",
        seg_data.class_names,
        seg_data.train.subset(list(range(8))),
        seg_data.test,
    )
    frozen = {"epochs": 1, "batch_size": 4, "lr": 1e-12, "weight_decay": 0.0}
    registry = Registry.discover(only=["selectors"])

    torch.manual_seed(5)
    backbone = smp.Unet(
        encoder_name="resnet18", encoder_weights=None, classes=1
    ).encoder  # ImageNet-style ResNet keys
    torch.save(backbone.state_dict(), tmp_path / "resnet18.pth")
    unet = registry.create(
        "selector", "unet", frozen | {"pretrained_path": str(tmp_path / "resnet18.pth")}
    )
    unet.fit(small)
    assert torch.allclose(unet.model.encoder.conv1.weight, backbone.conv1.weight, atol=1e-6)

    segmenter.save(
        tmp_path / "trained"
    )  # a saved selector: encoder and decoder are reused, the head is fresh
    again = registry.create(
        "selector", "segformer", frozen | {"pretrained_path": str(tmp_path / "trained")}
    )
    again.fit(small)
    trained, loaded = segmenter.model.state_dict(), again.model.state_dict()
    decoder_keys = [
        k for k in trained if k.startswith("decoder.") and trained[k].is_floating_point()
    ]
    assert decoder_keys and all(
        torch.allclose(loaded[k], trained[k], atol=1e-6) for k in decoder_keys if "running" not in k
    )
    assert not torch.allclose(
        loaded["segmentation_head.0.weight"], trained["segmentation_head.0.weight"]
    )

    with pytest.raises(
        ConfigError, match="options.encoder 'no-such-encoder' is not an smp encoder"
    ):
        registry.create("selector", "unet", {"encoder": "no-such-encoder"}).fit(small)


def test_dice_per_sample_uses_classes_present_in_the_mask():
    mask = torch.zeros(1, 4, 4, dtype=torch.long)
    mask[0, :2, :2] = 1  # 4 px of class 1, the rest background; class 2 absent
    pred = mask.clone()
    pred[0, 0, 0] = 2  # one class-1 pixel predicted as the absent class 2
    dice_fg = 2 * 3 / (3 + 4)
    dice_bg = 1.0
    assert dice_per_sample(pred, mask, 3, include_background=False).item() == pytest.approx(dice_fg)
    assert dice_per_sample(pred, mask, 3, include_background=True).item() == pytest.approx(
        (dice_fg + dice_bg) / 2
    )
    empty = torch.zeros(1, 4, 4, dtype=torch.long)
    assert dice_per_sample(empty, empty, 3, include_background=False).item() == pytest.approx(
        1.0
    )  # background only


# --------------------------------------------------------------------------- shared pieces


def test_metrics_agree_with_torchmetrics(
    classifier: ResNet18Selector, segmenter: SegformerSelector, cls_data: Dataset, seg_data: Dataset
):
    from torchmetrics.classification import MulticlassF1Score
    from torchmetrics.segmentation import DiceScore

    cls = evaluate(classifier, cls_data.test, cls_data.class_names)
    pred = classifier.predict(cls_data.test.image_tensor())
    truth = torch.from_numpy(cls_data.test.labels)
    per_class = MulticlassF1Score(num_classes=3, average="none")(pred, truth)
    assert list(cls["per_class_f1"].values()) == pytest.approx(per_class.tolist())
    assert cls["macro_f1"] == pytest.approx(per_class.mean().item())

    seg = evaluate(segmenter, seg_data.test, seg_data.class_names)
    masks = torch.from_numpy(seg_data.test.masks)
    dice = DiceScore(
        num_classes=3, average="none", input_format="index", aggregation_level="global"
    )(segmenter.predict(seg_data.test.image_tensor()), masks)
    assert list(seg["per_class_dice"].values()) == pytest.approx(dice.tolist())
    assert seg["mean_dice"] == pytest.approx(dice[1:].mean().item())


def test_class_weights():
    counts = torch.tensor([10, 30, 0])
    inverse = class_weights(counts, "inverse")
    assert inverse.tolist() == pytest.approx([2.0, 2 / 3, 0.0])
    assert float((inverse * counts).sum()) == pytest.approx(40.0)  # data-weighted mean 1
    soft = class_weights(counts, "sqrt-inverse")
    assert soft[0] / soft[1] == pytest.approx(3**0.5) and float(
        (soft * counts).sum()
    ) == pytest.approx(40.0)
    assert class_weights(counts, "none").tolist() == [1.0, 1.0, 1.0]


def test_augmentation_moves_masks_with_images_and_is_seeded():
    mask = torch.randint(0, 4, (6, 16, 16))
    images = mask[:, None].float().repeat(1, 3, 1, 1) / 2 - 1  # pixel value encodes the class
    geometric = AugmentConfig(degrees=0.0, translate=0.0, scale=0.0)
    out, out_mask = augment_batch(images, mask, geometric, torch.Generator().manual_seed(0))
    assert torch.equal(((out[:, 0] + 1) * 2).round().long(), out_mask)
    assert not torch.equal(out_mask, mask)  # something was flipped or turned
    warped, warped_mask = augment_batch(
        images, mask, AugmentConfig(degrees=20.0), torch.Generator().manual_seed(1)
    )
    again, _ = augment_batch(
        images, mask, AugmentConfig(degrees=20.0), torch.Generator().manual_seed(1)
    )
    assert torch.equal(warped, again)
    assert (((warped[:, 0] + 1) * 2).round().long() == warped_mask).float().mean() > 0.6


# --------------------------------------------------------------------------- registry and plugin


def test_registry_finds_every_kind_and_plugin_is_lazy():
    code = "import saadi_selectors.plugin, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    registry = Registry.discover()
    assert set(CLASSIFIERS + SEGMENTERS) <= set(registry.kinds("selector"))
    selector = registry.create(
        "selector", "resnet18", {"epochs": 1}, context=RunContext(device="cpu")
    )
    assert (
        isinstance(selector, ResNet18Selector)
        and selector.kind == "resnet18"
        and selector.options.epochs == 1
    )
    assert registry.create("selector", "resnet50", profile="paper").options.epochs == 40


@pytest.mark.parametrize("kind", CLASSIFIERS + SEGMENTERS)
def test_every_kind_trains_predicts_and_scores(kind: str, tmp_path: Path):
    registry = Registry.discover(only=["selectors"])
    selector = registry.create(
        "selector", kind, {"epochs": 1, "batch_size": 4}
    )  # one training step
    if selector.task == "classification":
        data = colour_dataset(size=32, n_train=4, n_test=3)
        samples = samples_from(data.test, list(data.test.labels))
        expected_shape: tuple[int, ...] = (3,)
    else:
        data = blob_dataset(size=32, n_train=4, n_test=3)
        samples = samples_from(data.test, masks=torch.from_numpy(data.test.masks))
        expected_shape = (3, 32, 32)
    selector.fit(data)
    assert tuple(selector.predict(data.test.image_tensor()).shape) == expected_shape
    scores = selector.score(samples)
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    selector.save(tmp_path)
    assert (tmp_path / "selector.json").is_file()


# --------------------------------------------------------------------------- core conformance suite


def test_selectors_pass_the_core_conformance_checks(
    classifier: ResNet18Selector,
    segmenter: SegformerSelector,
    cls_data: Dataset,
    seg_data: Dataset,
    tmp_path: Path,
):
    from saadi_core.conformance import check_selector

    check_selector(classifier, cls_data, fit=False, work_dir=tmp_path / "cls")
    check_selector(segmenter, seg_data, fit=False, work_dir=tmp_path / "seg")


# --------------------------------------------------------------------------- tiny profile on the embedded data (slow)


@pytest.mark.slow
def test_tiny_resnet18_learns_the_shape_defined_toy_classes():
    from saadi_core.data.toy_cls import make_toy_cls

    # the default data: 500 train / 400 test, 64 px, classes defined by shape only; the tiny
    # defaults (30 epochs) reached 92-98 % test accuracy on it (docs/benchmarks.md)
    data = make_toy_cls(seed=0)
    selector = Registry.discover(only=["selectors"]).create("selector", "resnet18")  # tiny defaults
    selector.fit(data)
    metrics = evaluate(selector, data.test, data.class_names)
    assert metrics["macro_f1"] > 0.85, metrics


@pytest.mark.slow
def test_tiny_segformer_segments_the_toy_scenes():
    from saadi_core.data.toy_seg import make_toy_seg

    data = make_toy_seg(seed=0)  # 600 train / 200 test, 64 px, 5 imbalanced classes
    selector = Registry.discover(only=["selectors"]).create("selector", "segformer")
    selector.fit(data)
    metrics = evaluate(selector, data.test, data.class_names)
    assert metrics["mean_dice"] > 0.8, metrics


# --------------------------------------------------------------------------- precision

BF16_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch
from test_selectors import colour_dataset, fast_cls
from saadi_selectors.classifiers import ResNet18Selector

dtypes = []

class Probe(ResNet18Selector):
    def _build(self, arch):
        model = super()._build(arch)
        model.fc.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        return model

data = colour_dataset(n_train=32, n_test=8)
selector = Probe(fast_cls(epochs=1, mixed_precision="bf16"))
selector.fit(data)
training, dtypes[:] = set(dtypes), []
logits = selector.logits(data.test.image_tensor())
params = {{p.dtype for p in selector.model.parameters()}}
print(sorted(map(str, training)), sorted(map(str, set(dtypes))), sorted(map(str, params)), bool(torch.isfinite(logits).all()))
"""


def test_bf16_training_autocasts_the_forward_and_keeps_fp32_weights(tmp_path: Path):
    """In a fresh process: accelerate's precision is process-wide and this one already runs fp32."""
    script = tmp_path / "bf16.py"
    script.write_text(BF16_SCRIPT.format(tests=str(Path(__file__).parent)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    training, inference, params, finite = done.stdout.strip().splitlines()[-1].split(" ")
    assert training == "['torch.bfloat16']" and inference == "['torch.float32']", done.stdout
    assert params == "['torch.float32']" and finite == "True", done.stdout


def test_mixed_precision_conflicting_with_the_process_is_a_clear_error(
    classifier: ResNet18Selector, cls_data: Dataset
):
    # the classifier fixture has set up this process's accelerate state in fp32 (CPU, "auto")
    with pytest.raises(
        ConfigError,
        match="selector .*: options.mixed_precision 'bf16' conflicts with 'no' already used in this process",
    ):
        ResNet18Selector(fast_cls(epochs=1, mixed_precision="bf16")).fit(cls_data)


# --------------------------------------------------------------------------- several processes (slow)

MULTI_PROCESS_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, {tests!r})
from accelerate import Accelerator
from test_selectors import blob_dataset, colour_dataset, fast_cls, fast_seg
from saadi_core.interfaces import RunContext
from saadi_selectors.classifiers import ResNet18Selector
from saadi_selectors.segmenters import SegformerSelector

def digest(model):
    state = model.state_dict()  # parameters and buffers (batch-norm statistics)
    return hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()

accelerator = Accelerator(cpu=True)
context = RunContext(accelerator=accelerator)
data = colour_dataset()
classifier = ResNet18Selector(fast_cls(batch_size=8), context)  # per process: the global batch is 16
classifier.fit(data)
segmenter = SegformerSelector(fast_seg(epochs=1, batch_size=4), context)
segmenter.fit(blob_dataset(n_train=24, n_test=4))
out = {{
    "processes": accelerator.num_processes,
    "rank": accelerator.process_index,
    "digest": digest(classifier.model),
    "seg_digest": digest(segmenter.model),
    "history": classifier.history,
    "predictions": classifier.predict(data.test.image_tensor()).tolist(),
}}
with open(sys.argv[1] + f"/rank{{accelerator.process_index}}.json", "w") as f:
    json.dump(out, f)
"""


@pytest.mark.slow
def test_two_cpu_processes_train_one_selector(cls_data: Dataset, tmp_path: Path):
    """``torchrun --standalone --nproc_per_node 2`` (what ``accelerate launch`` runs): both
    processes end with identical weights and batch-norm statistics, and the classifier is as good
    as a single process trained with the same global batch and number of steps."""
    import json

    script = tmp_path / "run.py"
    script.write_text(MULTI_PROCESS_SCRIPT.format(tests=str(Path(__file__).parent)))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert [r["processes"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    assert (
        ranks[0]["digest"] == ranks[1]["digest"]
        and ranks[0]["seg_digest"] == ranks[1]["seg_digest"]
    )
    assert ranks[0]["history"] == ranks[1]["history"]  # epoch losses averaged over both processes
    assert ranks[0]["predictions"] == ranks[1]["predictions"]

    single = ResNet18Selector(fast_cls(batch_size=16))
    single.fit(cls_data)
    truth = cls_data.test.labels
    accuracy = {
        "two processes": float(np.mean(np.array(ranks[0]["predictions"]) == truth)),
        "one process": float(
            np.mean(single.predict(cls_data.test.image_tensor()).numpy() == truth)
        ),
    }
    assert all(a > 0.6 for a in accuracy.values()), accuracy  # chance is 1/3
    assert abs(accuracy["two processes"] - accuracy["one process"]) < 0.25, accuracy
    for history in (ranks[0]["history"], single.history):
        assert [h["epoch"] for h in history] == [1, 2, 3]
        assert history[-1]["loss"] < history[0]["loss"]
        assert history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # the schedule ran to its end...
    assert ranks[0]["history"][0]["lr"] == pytest.approx(
        single.history[0]["lr"], rel=0.1
    )  # ...at the same pace


# --------------------------------------------------------------------------- region looks


def test_a_segmenter_scoring_by_look_fails_regions_painted_in_another_class_look(
    tmp_path: Path,
):
    """The look judge learns each class's look from the real images: a real image passes, and
    the same image judged against a mask that names its regions' classes wrongly fails — the
    case a segmenter's Dice misses when the region has the right shape."""
    from saadi_selectors.looks import windows

    from saadi_core.data.toy_seg_v3 import make_toy_seg_v3

    data = make_toy_seg_v3(seed=3, n_train=40, n_test=12)
    selector = SegformerSelector(fast_seg(epochs=1, score_by="dice-and-look", look_epochs=4))
    selector.fit(data)
    assert selector.history[-1]["look_test_window_accuracy"] > 0.8
    masks = torch.from_numpy(data.test.masks)
    swapped = masks.clone()
    swapped[masks == 1], swapped[masks == 4] = 4, 1  # gallbladder <-> tool
    images = data.test.image_tensor()
    assert selector.look is not None
    right, wrong = selector.look.scores(images, masks), selector.look.scores(images, swapped)
    assert right.mean() > 0.5 and wrong.mean() < 0.1, (right, wrong)
    # 'dice-and-look' is the lower of the two scores, sample by sample
    dice = dice_per_sample(selector.predict(images), masks, selector.num_classes, False)
    both = selector.score(samples_from(data.test, masks=masks))
    assert np.allclose(both, torch.minimum(dice, right).numpy())
    # windows hold only the region's own pixels, centred on it
    crops, classes, owners = windows(images[:1], masks[:1], 13, 4)
    assert crops.shape[1:] == (4, 13, 13) and torch.all(crops[:, 3, 6, 6] == 1)
    assert torch.all(crops[:, :3][crops[:, 3:].expand(-1, 3, -1, -1) == 0] == 0)
    # saved and restored with the segmenter (without moving the caller's RNG); a selector saved
    # without it cannot score by look
    selector.save(tmp_path / "look")
    restored = SegformerSelector(fast_seg(score_by="dice-and-look"))
    rng = torch.get_rng_state()
    restored.load(tmp_path / "look")
    assert torch.equal(rng, torch.get_rng_state())
    assert restored.score(samples_from(data.test, masks=masks)) == both
    (tmp_path / "look" / "look.pt").unlink()
    restored.load(tmp_path / "look")
    with pytest.raises(DataError, match="holds no look judge"):
        restored.score(samples_from(data.test, masks=masks))
    with pytest.raises(ValueError, match="look_window must be odd"):
        fast_seg(look_window=12)
