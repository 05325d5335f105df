"""End-to-end: ``saadi run --profile paper`` for ``ssd``, ``ssi`` and ``simuscope`` on miniature
pretrained directories (slow; CI runs `pytest -m slow`).

The ``paper`` profile's code paths — a local Stable Diffusion / SD-inpainting directory, a
pretrained ControlNet, the KL autoencoder, frozen text encoder, classifier-free guidance, the
paper's DPO settings — otherwise run only in unit tests. Here the whole loop runs on directories
written by :mod:`saadi_core.diffusion.miniature` (random weights, real diffusers/transformers
classes, no download), with every component in bf16 autocast on the CPU, and sizes cut down to
a minute or two per run. The samples are noise (random weights): this checks wiring, loading,
precision and outputs, not quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from saadi_core.samples_io import load_samples

pytestmark = pytest.mark.slow

#: cut-down sizes shared by the three runs; bf16 for every component (accelerate allows one
#: precision per process)
SMALL = [
    "dataset.options.n_train=40",
    "dataset.options.n_test=20",
    "dataset.options.image_size=32",
    "generator.options.sampling_steps=3",
    "selector.options.epochs=1",
    "downstream.options.epochs=1",
    "aligner.options.steps=2",
    "aligner.options.validate_every=2",
    "pool.n_per_condition=4",
    "evaluation.n_per_condition=4",
    *(
        f"{slot}.options.mixed_precision=bf16"
        for slot in ("generator", "selector", "downstream", "aligner")
    ),
]
SEG = [
    "generator.options.n_conditions=4",
    "selector.options.score_include_background=true",
    "evaluation.scales=[0.25]",
]


def _run(tmp_path: Path, name: str, generator: str, selector: str, extra: list[str]) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "saadi_core.cli",
        "--quiet",
        "run",
        "--runs-dir",
        str(tmp_path),
        "--name",
        name,
        "--profile",
        "paper",
        "--generator",
        generator,
        "--selector",
        selector,
        "--pairing",
        "best-worst",
    ]
    for assignment in [*SMALL, *extra]:
        cmd += ["--set", assignment]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / name


def _check(run: Path, generator: str, pretrained: Path, image_size: int = 32) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    assert (
        manifest["config"]["profile"] == "paper" and summary["components"]["generator"] == generator
    )
    assert all(stage["status"] == "done" for stage in manifest["stages"].values())
    for key in ("selector_pass", "dpo_implicit_accuracy", "downstream"):
        assert summary[key] is not None, key
    assert 0.0 <= summary["selector_pass"]["p_value"] <= 1.0
    stage = (run / manifest["stages"]["train-generator"]["path"]).resolve()
    saved = json.loads((stage / "model" / f"{generator}.json").read_text())
    # the frozen pretrained parts are referenced, not copied; the fine-tuned UNet is written
    assert saved["references"]["text_encoder"] == str(pretrained.resolve() / "text_encoder")
    assert saved["references"]["autoencoder"] == str(pretrained.resolve() / "vae")
    assert (stage / "model" / "unet").is_dir() and not (stage / "model" / "text_encoder").exists()
    for variant in ("base", "aligned"):
        samples = load_samples((run / manifest["stages"][f"sample-{variant}"]["path"]).resolve())
        images = torch.stack([s.image for s in samples])
        assert images.shape[1:] == (3, image_size, image_size) and torch.isfinite(images).all()
        assert images.min() >= -1 and images.max() <= 1
    return summary


def test_ssd_paper_profile(tmp_path: Path, saadi_pretrained_dirs: dict[str, Path]) -> None:
    sd = saadi_pretrained_dirs["sd"]
    run = _run(
        tmp_path,
        "ssd",
        "ssd",
        "resnet18",
        [f"generator.options.pretrained={sd}", "generator.options.max_steps=4"],
    )
    summary = _check(run, "ssd", sd)
    assert {"real", "real+base@1x", "real+aligned@1x"} <= set(summary["downstream"])


def test_ssi_paper_profile(tmp_path: Path, saadi_pretrained_dirs: dict[str, Path]) -> None:
    sd = saadi_pretrained_dirs["inpainting"]
    run = _run(
        tmp_path,
        "ssi",
        "ssi",
        "segformer",
        [f"generator.options.pretrained={sd}", "generator.options.max_steps=4", *SEG],
    )
    summary = _check(run, "ssi", sd)
    assert summary["downstream"]["metric"] == "mean_dice"


def test_simuscope_paper_profile(tmp_path: Path, saadi_pretrained_dirs: dict[str, Path]) -> None:
    sd, cn = saadi_pretrained_dirs["sd"], saadi_pretrained_dirs["controlnet"]
    extra = [
        f"generator.options.pretrained={sd}",
        f"generator.options.controlnet={cn}",
        "generator.options.style_steps=2",
        "generator.options.n_style_frames=8",
        "generator.options.style_rank=4",
        *SEG,
    ]
    run = _run(tmp_path, "simuscope", "simuscope", "segformer", extra)
    summary = _check(run, "simuscope", sd)
    manifest = json.loads((run / "manifest.json").read_text())
    saved = (run / manifest["stages"]["train-generator"]["path"]).resolve() / "model"
    # the paper's pretrained ControlNet is used as loaded (max_steps 0) and referenced
    assert json.loads((saved / "simuscope.json").read_text())["controlnet_reference"] == str(
        cn.resolve()
    )
    assert summary["alignment"]["lora"]["adapter_name"] == "saadi_dpo"
