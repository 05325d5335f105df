"""Fidelity metrics: the contract between the evaluation stage and ``metric`` plugins.

A fidelity metric compares a set of synthetic images with the real training images they were
meant to resemble (FID/KID, MS-SSIM, PSNR, per-region FID/KID, memorisation). The core owns
only the contract and the orchestration; every metric comes from a plugin registered through
``saadi_register_metrics`` (the first-party ones live in ``saadi_metrics``), so a user can add
one without touching the core.

Contract of a metric registration (same pattern as datasets)::

    metric = entry.load()(entry.build_options(raw_options, profile))
    metric.name                        # str, used in notes
    metric.compute(inputs)             # FidelityInputs -> dict (JSON-serialisable values)
    getattr(metric, "section", "variants")

The returned keys are merged into ``result[section][variant]`` (``section`` defaults to
``"variants"``; the memorisation metric writes to ``"memorisation"``). The key ``"notes"`` is
reserved: a list of strings explaining what was omitted and why, collected into the top-level
``"notes"``. A metric that does not apply returns no value for it (never ``None``) and a note.

A metric may also implement the paired comparison of a run's base and aligned samples::

    metric.compare(base, aligned, groups)  # FidelityInputs, FidelityInputs, (M,) int array -> dict

``groups[i]`` is the condition index of synthetic image ``i`` in both variants (they come from the
same seeds and conditions, in the same order). It returns, per value, the
:func:`saadi_core.evaluation.stats.paired_bootstrap` block (base, aligned, difference, ci95,
verdict), so a FID or KID difference is never reported without its interval;
:func:`compare_fidelity` collects them.

Feature-space metrics call ``inputs.features``; :func:`compute_fidelity` memoises it by image
content, so FID, KID and memorisation extract the real and synthetic features once, across
variants too. Which extractor was used is reported once under ``"feature_extractor"`` because
FID in a selector's feature space is not comparable with published (Inception) FID.

Non-finite floats (PSNR of identical images is ``+inf``) are stored as the strings ``"inf"``,
``"-inf"`` and ``"nan"`` so the output is strict JSON.

This module imports torch lazily, so the pipeline can import it while the CLI stays light.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from saadi_core.errors import ConfigError, DataError, PluginError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from saadi_core.interfaces import ProgressReporter, Selector
    from saadi_core.registry import Registry

#: the result section a metric writes to unless it sets ``section``
DEFAULT_SECTION = "variants"


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images ``(N, 3, H, W)`` in ``[-1, 1]`` to embeddings ``(N, D)``.

    ``name`` is a short identifier (``"selector:resnet18"``, ``"inception-v3"``); ``label`` is the
    human text the report prints next to FID/KID, saying what the features are and whether the
    numbers may be compared with published ones.
    """

    name: str
    label: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class FidelityMetric(Protocol):
    """What a ``metric`` registration's target builds (see the module docstring)."""

    name: str

    def compute(self, inputs: FidelityInputs) -> dict[str, Any]: ...


@dataclass
class FidelityInputs:
    """One variant's images (e.g. ``base`` or ``aligned``) with what metrics may need.

    ``real``: the real *training* images ``(N, 3, H, W)`` in ``[-1, 1]`` — the generator's
    training data, so memorisation checks copies of what it saw; ``synthetic``: ``(M, 3, H, W)``.
    ``real_masks`` / ``synthetic_masks``: ``int64`` class ids ``(N, H, W)`` / ``(M, H, W)`` for
    segmentation (``None`` for classification). ``reference``: an optional paired real image per
    synthetic one ``(M, 3, H, W)`` (the inpainting source, a simulator frame), for PSNR and
    MS-SSIM against it. ``background_id``: the class left out of per-region metrics (its
    bounding box is nearly always the whole image); ``None`` keeps every class.
    """

    real: torch.Tensor
    synthetic: torch.Tensor
    class_names: list[str]
    features: FeatureExtractor
    real_masks: torch.Tensor | None = None
    synthetic_masks: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    background_id: int | None = 0

    def __post_init__(self) -> None:
        for name in ("real", "synthetic", "reference"):
            images = getattr(self, name)
            if images is not None and (images.dim() != 4 or images.shape[1] != 3):
                raise DataError(
                    f"fidelity inputs: '{name}' must be images (N, 3, H, W), got {tuple(images.shape)}"
                )
        size = tuple(self.real.shape[-2:])
        if tuple(self.synthetic.shape[-2:]) != size:
            raise DataError(
                f"fidelity inputs: synthetic images are {tuple(self.synthetic.shape[-2:])} px, real ones {size} px"
            )
        if self.reference is not None and self.reference.shape != self.synthetic.shape:
            raise DataError(
                f"fidelity inputs: 'reference' {tuple(self.reference.shape)} must match 'synthetic' {tuple(self.synthetic.shape)} "
                "(one paired real image per synthetic image)"
            )
        for name, images in (("real_masks", self.real), ("synthetic_masks", self.synthetic)):
            masks = getattr(self, name)
            if masks is not None and tuple(masks.shape) != (images.shape[0], *images.shape[-2:]):
                raise DataError(
                    f"fidelity inputs: '{name}' {tuple(masks.shape)} does not match its images {tuple(images.shape)}"
                )


# --------------------------------------------------------------------------- feature extractors


@dataclass
class SelectorFeatures:
    """A selector's pooled backbone features: the offline default extractor.

    With ``shift``/``scale`` (see :func:`selector_features`) every dimension is standardised by
    the real images' mean and spread and dimensions constant on the real images (``keep``) are
    dropped."""

    selector: Selector
    name: str
    label: str
    shift: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    keep: torch.Tensor | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        features = self.selector.features(images).double().cpu()
        if self.shift is None or self.scale is None or self.keep is None:
            return features
        return ((features - self.shift) / self.scale)[:, self.keep]


def selector_features(
    selector: Selector,
    trained_on: str = "this run's real data",
    standardise_on: torch.Tensor | None = None,
) -> FeatureExtractor:
    """The offline default feature extractor: ``selector.features`` (e.g. the pooled backbone
    of the stage-2 selector). Needs no download, but its FID/KID are in that network's feature
    space: valid for comparing variants of one run, never with published Inception FID — the
    label says so.

    ``standardise_on`` (the real training images): standardise each dimension by their mean and
    standard deviation. A trained backbone's scale is arbitrary — segformer's pooled deepest
    features on 64 px toy frames vary by ~3e-5 around 0.78, which put FID at ~1e-5 and KID at
    ~1e-7 whatever the images — so FID/KID are then measured in units of the real images' own
    spread. Dimensions constant on the real images carry no information and are dropped."""
    from saadi_core.interfaces import Selector

    kind = selector.kind or type(selector).__name__
    if type(selector).features is Selector.features:
        raise ConfigError(
            f"selector '{kind}' does not expose image features for FID/KID; use a selector that implements "
            "features() or give local Inception-v3 weights"
        )
    extractor = SelectorFeatures(
        selector=selector,
        name=f"selector:{kind}",
        label=f"selector backbone ({kind}, trained on {trained_on}) — NOT Inception; do not compare with published FID",
    )
    if standardise_on is not None:
        reference = extractor(standardise_on)
        if reference.shape[0] < 2:
            raise DataError("standardising selector features needs at least 2 real images")
        std = reference.std(dim=0)
        extractor.shift, extractor.keep = reference.mean(dim=0), std > 0
        extractor.scale = std.masked_fill(std == 0, 1.0)
        extractor.name += ":standardised"
        extractor.label = (
            f"selector backbone ({kind}, trained on {trained_on}), each dimension standardised on the real training "
            "images — NOT Inception; do not compare with published FID"
        )
    return extractor


@dataclass
class InceptionFeatures:
    """Inception-v3 2048-d pool features from a local weights file (see :func:`inception_features`)."""

    model: torch.nn.Module
    weights_path: Path
    resize: int
    batch_size: int
    device: str
    name: str = "inception-v3"
    label: str = ""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = (
                    images[start : start + self.batch_size]
                    .to(self.device, torch.float32)
                    .clamp(-1.0, 1.0)
                )
                x = F.interpolate(
                    x,
                    size=(self.resize, self.resize),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
                out.append(self.model(x).double().cpu())
        return torch.cat(out) if out else torch.empty(0, 2048, dtype=torch.float64)


def inception_features(
    weights_path: str | Path, device: str = "cpu", batch_size: int = 32, resize: int = 299
) -> FeatureExtractor:
    """Inception-v3 pool features (2048-d) from LOCAL weights; never downloads.

    The installed torchmetrics needs torch-fidelity (which downloads its weights) for its own
    Inception, so the network is torchvision's ``inception_v3`` built without weights and
    loaded from ``weights_path``: a state dict (or a checkpoint holding one under
    ``state_dict``) of that architecture, e.g. torchvision's ImageNet ``inception_v3`` file or
    the FID port ``pt_inception-2015-12-05`` (1008 classes; head size and auxiliary classifier
    are read from the file). Both expect inputs in ``[-1, 1]``, which is what images are here;
    they are resized to ``resize`` px (299 for standard FID). torchvision's blocks differ from
    the TF graph of published FID in a few pooling details, so even with the FID weights the
    numbers are close to, not identical with, published FID.
    """
    import torch
    from torchvision.models import inception_v3

    path = Path(weights_path).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"Inception weights '{path}' is a folder; give the weights file inside it"
        )
    if not path.is_file():
        raise ConfigError(
            f"Inception weights file '{path}' not found (give a local inception_v3 state dict; nothing is downloaded)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        ValueError,
        EOFError,
        OSError,
        pickle.UnpicklingError,
    ) as exc:  # corrupt / not a torch file
        raise ConfigError(
            f"Inception weights file '{path}' could not be read: {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    head = state.get("fc.weight") if isinstance(state, dict) else None
    if head is None or head.dim() != 2:
        raise ConfigError(
            f"Inception weights file '{path}' holds no inception_v3 state dict (no 'fc.weight' tensor)"
        )
    aux = any(key.startswith("AuxLogits.") for key in state)
    with torch.random.fork_rng(devices=[]):
        model = inception_v3(
            weights=None,
            aux_logits=aux,
            init_weights=False,
            num_classes=int(head.shape[0]),
            transform_input=False,
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = (
            str(exc).strip().splitlines()
        )  # torch lists the missing/unexpected keys after line 1
        detail = " ".join(line.strip() for line in lines[1:3]) or lines[0]
        raise ConfigError(
            f"Inception weights file '{path}' does not fit torchvision's inception_v3: {detail}"
        ) from None
    model.fc = torch.nn.Identity()  # the 2048-d pooled features FID is defined on
    model = model.to(device).eval()
    return InceptionFeatures(
        model=model,
        weights_path=path,
        resize=resize,
        batch_size=batch_size,
        device=device,
        label=f"Inception-v3 pool features (2048-d, {resize} px) from local weights '{path.name}' "
        "(torchvision architecture; close to, not identical with, published FID)",
    )


class _MemoFeatures:
    """Memoises an extractor by image content, so every metric and variant sharing a set of
    images (the real training images above all) pays for its features once."""

    def __init__(self, extractor: FeatureExtractor) -> None:
        self.extractor = extractor
        self.name = extractor.name
        self.label = extractor.label
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        data = images.detach().cpu().contiguous()
        key = (
            tuple(data.shape),
            str(data.dtype),
            hashlib.sha256(data.numpy().tobytes()).hexdigest(),
        )
        if key not in self._cache:
            feats = self.extractor(images).detach().double().cpu()
            if feats.dim() != 2 or feats.shape[0] != images.shape[0]:
                raise PluginError(
                    f"feature extractor '{self.name}' returned {tuple(feats.shape)} for {images.shape[0]} images; expected (N, D)"
                )
            self._cache[key] = feats
        return self._cache[key]


# --------------------------------------------------------------------------- orchestration


def json_safe(value: Any, where: str = "metric") -> Any:
    """``value`` with NumPy/torch numbers and arrays as plain Python ones and non-finite floats
    as ``"inf"``, ``"-inf"`` or ``"nan"``; anything not JSON-representable is a plugin bug
    named by ``where``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, where) for v in value]
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else float(value)
    if isinstance(value, int):
        return int(value)
    if callable(getattr(value, "tolist", None)):  # NumPy / torch scalars and arrays
        return json_safe(value.tolist(), where)
    raise PluginError(
        f"{where} returned a value that is not JSON-serialisable: {type(value).__name__}"
    )


def _metric_of(registry: Registry, kind: str, raw: dict[str, Any] | None, profile: str) -> Any:
    entry = registry.get("metric", kind)
    metric = entry.load()(entry.build_options(raw, profile))
    if not callable(getattr(metric, "compute", None)):
        raise PluginError(
            f"plugin '{entry.plugin}': metric '{kind}' built an object without compute(inputs)"
        )
    return metric


def compute_fidelity(
    registry: Registry,
    inputs_by_variant: Mapping[str, FidelityInputs],
    kinds: list[str] | None = None,
    profile: str = "tiny",
    options: Mapping[str, dict[str, Any]] | None = None,
    progress: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Run fidelity metrics on every variant; returns a JSON-serialisable dict::

        {"feature_extractor": {"name", "label"},
         "variants": {variant: {"fid", "kid_mean", "kid_std", "ms_ssim", "psnr",
                                "diversity_ms_ssim", "per_class": {class: {...}}}},
         "memorisation": {variant: {"nearest_distance": {...}, "closest_pairs": [...]}},
         "notes": [...]}

    ``kinds``: metric kinds to run (default: every registered one, in name order); ``options``:
    raw options per kind, validated over ``profile``'s defaults. Metrics that do not apply to an
    input are omitted and explained in ``notes``. Every variant must use the same feature
    extractor, or their FID/KID would not be comparable.
    """
    if not inputs_by_variant:
        raise ValueError("compute_fidelity needs at least one variant")
    extractors = {id(inputs.features): inputs.features for inputs in inputs_by_variant.values()}
    if len(extractors) != 1:
        names = sorted({f.name for f in extractors.values()})
        raise ValueError(
            f"all variants must share one feature extractor object, got {len(extractors)} ({', '.join(names)})"
        )
    memo = _MemoFeatures(next(iter(extractors.values())))
    kinds = registry.kinds("metric") if kinds is None else list(kinds)
    metrics = {
        kind: _metric_of(registry, kind, dict((options or {}).get(kind) or {}), profile)
        for kind in kinds
    }

    result: dict[str, Any] = {
        "feature_extractor": {"name": memo.name, "label": memo.label},
        DEFAULT_SECTION: {variant: {} for variant in inputs_by_variant},
    }
    notes: dict[tuple[str, str], list[str]] = {}
    jobs = [(variant, kind) for variant in inputs_by_variant for kind in kinds]
    tracked = (
        progress.track(jobs, "fidelity metrics", total=len(jobs)) if progress is not None else jobs
    )
    for variant, kind in tracked:
        metric = metrics[kind]
        name = str(getattr(metric, "name", kind))
        out = dict(metric.compute(replace(inputs_by_variant[variant], features=memo)))
        for note in out.pop("notes", []):
            notes.setdefault((name, str(note)), []).append(variant)
        section = str(getattr(metric, "section", DEFAULT_SECTION))
        target = result.setdefault(section, {}).setdefault(variant, {})
        clash = sorted(set(out) & set(target))
        if clash:
            raise PluginError(
                f"metric '{name}' returns {', '.join(clash)}, already set by another metric for '{variant}'"
            )
        target.update(json_safe(out, f"metric '{name}'"))
    result["notes"] = [
        f"{name}: {text}"
        + ("" if len(variants) == len(inputs_by_variant) else f" [{', '.join(variants)}]")
        for (name, text), variants in notes.items()
    ]
    return result


def compare_fidelity(
    registry: Registry,
    base: FidelityInputs,
    aligned: FidelityInputs,
    groups: Any,
    kinds: list[str] | None = None,
    profile: str = "tiny",
    options: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Aligned − base of every metric that implements ``compare`` (see the module docstring),
    both variants measured with one memoised extractor: ``{"feature_extractor", "comparison":
    {value: block}}``."""
    if base.features is not aligned.features:
        raise ValueError("base and aligned must share one feature extractor object")
    memo = _MemoFeatures(base.features)
    base, aligned = replace(base, features=memo), replace(aligned, features=memo)
    kinds = registry.kinds("metric") if kinds is None else list(kinds)
    comparison: dict[str, Any] = {}
    for kind in kinds:
        metric = _metric_of(registry, kind, dict((options or {}).get(kind) or {}), profile)
        if callable(getattr(metric, "compare", None)):
            comparison.update(json_safe(metric.compare(base, aligned, groups), f"metric '{kind}'"))
    return {"feature_extractor": {"name": memo.name, "label": memo.label}, "comparison": comparison}
