"""Pretrained embedded toy generators: the pretraining corpus, the shipped weights, the
``pretrained`` option (``embedded`` / ``none`` / a directory), loading into a model whose class
names the corpus never saw, and the one-line errors for a missing, corrupt or mismatched file.

Loading tests use the small test architecture exported to a temporary file, except the two that
check the shipped files themselves (reading 3 MB each, no training).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _diffusion_helpers import LATENT_SMALL, SIZE, toy_classification, toy_segmentation
from safetensors.torch import load_file

from saadi_core.data.corpus import MATERIAL_NAMES, SHAPE_NAMES, make_corpus_cls, make_corpus_seg
from saadi_core.data.toy_cls import CLASS_NAMES as TOY_CLS_NAMES
from saadi_core.data.toy_seg import CLASS_NAMES as TOY_SEG_NAMES
from saadi_core.diffusion.builders import build_clip_text_encoder, build_word_tokenizer
from saadi_core.diffusion.embedded import TEXT_MAX_LENGTH, EmbeddedWeightsError, export_weights
from saadi_core.diffusion.latent import build_from_config
from saadi_core.errors import ConfigError, DataError
from saadi_core.registry import Registry

SHIPPED_LIMIT_MB = 25


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["ssd", "ssi"])


# --------------------------------------------------------------------------- corpus


def test_corpus_is_deterministic_and_differs_from_the_targets() -> None:
    a, b = (
        make_corpus_cls(seed=1, n=24, image_size=32),
        make_corpus_cls(seed=1, n=24, image_size=32),
    )
    assert np.array_equal(a.train.images, b.train.images) and np.array_equal(
        a.train.labels, b.train.labels
    )
    assert not np.array_equal(
        a.train.images, make_corpus_cls(seed=2, n=24, image_size=32).train.images
    )
    assert set(a.train.labels.tolist()) == set(range(len(SHAPE_NAMES)))  # balanced over the shapes
    seg = make_corpus_seg(seed=1, n=12, image_size=32)
    assert seg.task == "segmentation" and seg.class_names[0] == "background"
    assert (seg.train.masks > 0).reshape(12, -1).any(axis=1).all()  # every scene has regions
    assert int(seg.train.masks.max()) < len(MATERIAL_NAMES)
    # related but different: no target class is a corpus class
    assert not set(SHAPE_NAMES + MATERIAL_NAMES[1:]) & set(TOY_CLS_NAMES + TOY_SEG_NAMES)
    # the object is drawn: pixels differ from the image's median background somewhere
    images = a.train.images.astype(np.int16)
    assert (
        np.abs(images - np.median(images, axis=(1, 2), keepdims=True)).max(axis=(1, 2, 3)) > 40
    ).all()


# --------------------------------------------------------------------------- options


def test_pretrained_option_embedded_none_and_paper(registry: Registry) -> None:
    # ssd starts from its embedded weights by default and fine-tunes until more training no longer
    # moves it (docs/benchmarks.md, "A converged base"); ssi trains from scratch until its weights
    # beat that (docs/pretraining.md)
    for kind, scratch, fine_tune, default_weights in (
        ("ssd", 1500, 1600, "embedded"),
        ("ssi", 600, 300, None),
    ):
        entry = registry.get("generator", kind)
        default = entry.build_options({})
        assert default.pretrained == default_weights
        assert default.max_steps == (fine_tune if default_weights else scratch)
        embedded = entry.build_options({"pretrained": "embedded"})
        assert embedded.pretrained == "embedded" and embedded.max_steps == fine_tune
        none = entry.build_options({"pretrained": "none"})
        assert none.pretrained is None and none.max_steps == scratch
        assert entry.build_options({"pretrained": "none", "max_steps": 7}).max_steps == 7
        paper = entry.build_options({}, profile="paper")
        assert paper.pretrained is None and paper.max_steps == 3000
        assert paper.resolution is None  # the pretrained model's native size
        assert (
            str(entry.build_options({"pretrained": "/models/sd15"}, profile="paper").pretrained)
            == "/models/sd15"
        )


# --------------------------------------------------------------------------- loading


def _export_small(kind: str, path: Path, class_names: list[str]) -> None:
    """Embedded weights of the small test architecture, as ``benchmarks/pretrain.py`` writes them
    (tokenizer of TEXT_MAX_LENGTH positions), after perturbing the UNet so loading is visible."""
    registry = Registry.discover(only=[kind])
    generator = registry.create(
        "generator", kind, {**LATENT_SMALL, "prompt_template": "An image of {class}"}
    )
    prompts = [generator.prompt(n) for n in class_names]
    model = build_from_config(
        generator.options,
        prompts,
        SIZE,
        name=kind,
        inpainting=generator.inpainting,
        text_time_embedding=generator._text_time_embedding,
    )
    model.tokenizer = build_word_tokenizer([*prompts, ""], max_length=TEXT_MAX_LENGTH)
    model.text_encoder = build_clip_text_encoder(model.tokenizer, 16, 1, 2)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(0.5)
    export_weights(model, path, name=kind, options=generator.options, info={"corpus": "test"})


@pytest.mark.parametrize("kind", ["ssd", "ssi"])
def test_embedded_weights_load_and_extend_the_vocabulary(
    registry: Registry, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / f"{kind}.safetensors"
    _export_small(kind, file, ["background", "square", "star"])
    dataset = toy_classification() if kind == "ssd" else toy_segmentation()
    generator = registry.create(
        "generator", kind, {**LATENT_SMALL, "pretrained": "embedded", "max_steps": 0}
    )
    monkeypatch.setattr(type(generator), "embedded_weights", lambda self: file)
    generator.fit(dataset)
    stored = load_file(str(file))
    unet = generator.model.unet.state_dict()
    assert all(
        torch.equal(unet[k[len("unet.") :]], v) for k, v in stored.items() if k.startswith("unet.")
    )
    vocab = generator.model.tokenizer.get_vocab()
    corpus_rows = stored[next(k for k in stored if k.endswith("token_embedding.weight"))]
    table = generator.model.text_encoder.get_input_embeddings().weight
    assert vocab["square"] < len(corpus_rows) and torch.equal(
        table[vocab["square"]], corpus_rows[vocab["square"]]
    )
    new_word = (
        dataset.class_names[1].split("_")[0].lower()
    )  # a target class name the corpus never used
    assert vocab[new_word] >= len(corpus_rows) and table.shape[0] == len(vocab)
    assert len(generator.sample(generator.conditions(dataset)[:1], 1, seed=0)) == 1


def test_missing_corrupt_and_mismatched_weights_are_one_line_errors(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saadi_ssd.generator import SSDGenerator

    dataset = toy_classification()
    options = {**LATENT_SMALL, "pretrained": "embedded", "max_steps": 0}
    missing = tmp_path / "gone.safetensors"
    monkeypatch.setattr(SSDGenerator, "embedded_weights", lambda self: missing)
    with pytest.raises(
        EmbeddedWeightsError,
        match=r"^embedded weights of generator 'ssd' not found: .*gone\.safetensors",
    ) as info:
        registry.create("generator", "ssd", options).fit(dataset)
    assert isinstance(info.value, DataError) and "\n" not in str(info.value)

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all")
    monkeypatch.setattr(SSDGenerator, "embedded_weights", lambda self: corrupt)
    with pytest.raises(
        EmbeddedWeightsError, match=r"corrupt or unreadable: .*corrupt\.safetensors"
    ) as info:
        registry.create("generator", "ssd", options).fit(dataset)
    assert "\n" not in str(info.value)

    good = tmp_path / "ssd.safetensors"
    _export_small("ssd", good, ["square"])
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-1000])
    monkeypatch.setattr(SSDGenerator, "embedded_weights", lambda self: truncated)
    with pytest.raises(EmbeddedWeightsError, match="truncated.safetensors"):
        registry.create("generator", "ssd", options).fit(dataset)

    monkeypatch.setattr(SSDGenerator, "embedded_weights", lambda self: good)
    with pytest.raises(
        ConfigError,
        match=r"^ssd option 'block_out_channels' is \[16, 48\] but the embedded weights",
    ):
        registry.create("generator", "ssd", {**options, "block_out_channels": [16, 48]}).fit(
            dataset
        )
    with pytest.raises(ConfigError, match="prompt_template"):
        registry.create(
            "generator", "ssd", {**options, "prompt_template": "{class} " + "very " * 30}
        ).fit(dataset)
    with pytest.raises(EmbeddedWeightsError, match="not embedded weights of generator 'ssi'"):
        from saadi_core.diffusion.embedded import read_weights

        read_weights(good, name="ssi")


# --------------------------------------------------------------------------- the shipped files


@pytest.mark.parametrize("kind", ["ssd", "ssi"])
def test_pretrained_embedded_starts_from_the_shipped_tensors(registry: Registry, kind: str) -> None:
    options = {"pretrained": "embedded", "max_steps": 0}
    generator = registry.create(
        "generator", kind, {**options, "n_conditions": 1} if kind == "ssi" else options
    )
    file = generator.embedded_weights()
    assert file.is_file() and file.parent.name == "weights"
    if kind == "ssd":
        from saadi_core.data.toy_cls import make_toy_cls

        dataset = make_toy_cls(n_train=10, n_test=5)
    else:
        from saadi_core.data.toy_seg import make_toy_seg

        dataset = make_toy_seg(n_train=6, n_test=2)
    generator.fit(
        dataset
    )  # tiny architecture (the one the file was made with), pretrained: embedded
    stored = load_file(str(file))
    unet = generator.model.unet.state_dict()
    assert all(
        torch.equal(unet[k[len("unet.") :]], v) for k, v in stored.items() if k.startswith("unet.")
    )


def test_shipped_weights_fit_the_size_budget(registry: Registry) -> None:
    files = [registry.create("generator", kind, {}).embedded_weights() for kind in ("ssd", "ssi")]
    assert sum(f.stat().st_size for f in files) <= SHIPPED_LIMIT_MB * 2**20


def test_shipped_weights_are_the_ones_documented(registry: Registry) -> None:
    """docs/pretraining.md names each shipped file's SHA-256: replacing the weights without
    re-documenting (and re-measuring) them fails here."""
    import hashlib

    docs = (Path(__file__).resolve().parents[1] / "docs" / "pretraining.md").read_text()
    for kind in ("ssd", "ssi"):
        path = registry.create("generator", kind, {}).embedded_weights()
        assert hashlib.sha256(path.read_bytes()).hexdigest() in docs, path.name


def test_default_ssd_fits_its_shipped_weights(registry: Registry) -> None:
    """The tiny default (pretrained: embedded) loads the shipped file: its architecture options
    match the file's (a default changed without re-pretraining is a ConfigError at fit time)."""
    from saadi_core.diffusion.embedded import _check_architecture, read_weights

    generator = registry.create("generator", "ssd", {})
    path = generator.embedded_weights()
    _, metadata = read_weights(path, name="ssd")
    _check_architecture(metadata, generator.options, "ssd", path)


@pytest.mark.parametrize("kind", ["ssd", "ssi"])
def test_embedded_weights_join_the_generators_cache_key(
    registry: Registry, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-pretrained file changes the key of every stage built on the generator (options
    alone would not: they still say 'embedded'); no file to read, no fingerprint."""
    import hashlib

    generator = registry.create("generator", kind, {"pretrained": "embedded"})
    shipped = generator.embedded_weights()
    assert generator.cache_inputs() == {
        "embedded_weights": hashlib.sha256(shipped.read_bytes()).hexdigest()
    }
    changed = bytearray(shipped.read_bytes())
    changed[-1] ^= 1
    (tmp_path / shipped.name).write_bytes(bytes(changed))
    monkeypatch.setattr(type(generator), "embedded_weights", lambda self: tmp_path / shipped.name)
    assert (
        generator.cache_inputs()["embedded_weights"]
        != hashlib.sha256(shipped.read_bytes()).hexdigest()
    )
    (tmp_path / shipped.name).unlink()
    assert generator.cache_inputs() == {"embedded_weights": "missing"}  # fit names the file
    assert registry.create("generator", kind, {"pretrained": None}).cache_inputs() == {}


def test_session_keys_carry_the_generators_inputs(tmp_path: Path) -> None:
    from saadi_core.config import RunConfig
    from saadi_core.registry import get_registry
    from saadi_core.session import RunSession

    config = RunConfig(
        runs_dir=tmp_path,
        dataset={"kind": "toy-cls", "options": {"n_train": 10, "n_test": 5}},
        generator={"kind": "ssd"},
        selector={"kind": "resnet18"},
    )
    session = RunSession(config, get_registry(), True, None)
    try:
        params = session.params("generator")
        assert set(params["inputs"]) == {"embedded_weights"}
        assert "inputs" not in session.params("selector")  # nothing of its own to read
    finally:
        session.store.release()
