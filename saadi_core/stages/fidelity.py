"""``fidelity-<variant>`` and ``fidelity-compare``: fidelity metrics (registered ``metric``
plugins) of each variant's held-out samples against the real training images, and aligned − base
with paired bootstrap intervals.

Features come from local Inception weights when given, else from the trained selector's backbone
— labelled so, since that FID is not comparable with published Inception FID. A selector without
features and no weights: a note only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saadi_core.evaluation.samples import paired_groups
from saadi_core.interfaces import Sample
from saadi_core.session import RunSession
from saadi_core.stages.names import FIDELITY_COMPARE, TRAIN_SELECTOR, fidelity_stage, sample_stage
from saadi_core.store import StageResult, atomic_write_json

INPUTS = (sample_stage("base"), sample_stage("aligned"), TRAIN_SELECTOR)
OUTPUTS = ("fidelity.json",)
HEADLINE = ("fid", "kid_mean", "kid_std", "psnr", "ms_ssim", "diversity_ms_ssim")


def params(session: RunSession) -> dict[str, Any]:
    return session.config.fidelity.model_dump(mode="json") | {
        "profile": session.config.profile,
        "selector_features": "standardised",
    }


def metric_kinds(session: RunSession) -> list[tuple[str, str]]:
    """The metric kinds the stages run (default: every registered one), for the cache key."""
    kinds = session.config.fidelity.metrics
    return [("metric", k) for k in (session.registry.kinds("metric") if kinds is None else kinds)]


def run_variant(
    session: RunSession, variant: str, samples: StageResult, selector_stage: StageResult
) -> StageResult:
    """One variant's fidelity metrics."""
    fidelity = session.config.fidelity

    def compute(out: Path) -> dict[str, Any]:
        from saadi_core.evaluation.fidelity import compute_fidelity
        from saadi_core.samples_io import load_samples

        features, problem = feature_extractor(session, selector_stage)
        if features is None:
            result: dict[str, Any] = {
                "variants": {},
                "memorisation": {},
                "notes": [f"not computed: {problem}"],
            }
        else:
            result = compute_fidelity(
                session.registry,
                {variant: fidelity_inputs(session, load_samples(samples.path), features)},
                kinds=fidelity.metrics,
                profile=session.config.profile,
                options=fidelity.options,
                progress=session.progress,
            )
        atomic_write_json(out / "fidelity.json", result)
        headline = result.get("variants", {}).get(variant, {})
        return {k: headline[k] for k in HEADLINE if k in headline}

    return session.stage(
        fidelity_stage(variant),
        params(session),
        compute,
        [samples, selector_stage],
        slots=("selector",),
        kinds=metric_kinds(session),
    )


def run_compare(
    session: RunSession, samples: dict[str, StageResult], selector_stage: StageResult
) -> StageResult:
    """Aligned − base of the metrics that implement ``compare`` (FID, KID), with paired
    bootstrap intervals over conditions: base and aligned samples share seeds and conditions,
    so a fidelity difference is reported with its significance like the pass rates."""
    fidelity = session.config.fidelity

    def compute(out: Path) -> dict[str, Any]:
        from saadi_core.evaluation.fidelity import compare_fidelity
        from saadi_core.samples_io import load_samples

        features, problem = feature_extractor(session, selector_stage)
        if features is None:
            return {"comparison": {}, "notes": [f"not compared: {problem}"]}
        base, aligned = (load_samples(samples[v].path) for v in ("base", "aligned"))
        groups = paired_groups(base, aligned)
        if groups is None:
            return {
                "comparison": {},
                "notes": [
                    "not compared: base and aligned samples are not paired by condition and index"
                ],
            }
        return compare_fidelity(
            session.registry,
            fidelity_inputs(session, base, features),
            fidelity_inputs(session, aligned, features),
            groups,
            kinds=fidelity.metrics,
            profile=session.config.profile,
            options=fidelity.options,
        )

    deps = [samples["base"], samples["aligned"], selector_stage]
    return session.stage(
        FIDELITY_COMPARE,
        params(session),
        compute,
        deps,
        slots=("selector",),
        kinds=metric_kinds(session),
    )


def run_all(
    session: RunSession, samples: dict[str, StageResult], selector_stage: StageResult
) -> dict[str, Any]:
    """Every variant's fidelity stage and, with base and aligned, their comparison, merged
    into the run's ``fidelity.json``."""
    merged: dict[str, Any] = {"variants": {}, "memorisation": {}, "notes": []}
    for variant, stage in samples.items():
        result = json.loads(
            (
                run_variant(session, variant, stage, selector_stage).path / "fidelity.json"
            ).read_text()
        )
        merged.setdefault("feature_extractor", result.get("feature_extractor"))
        for section in ("variants", "memorisation"):
            merged[section].update(result.get(section, {}))
        merged["notes"].extend(n for n in result.get("notes", []) if n not in merged["notes"])
    if "base" in samples and "aligned" in samples:
        compared = run_compare(session, samples, selector_stage).outputs
        merged["comparison"] = compared.get("comparison", {})
        merged["notes"].extend(compared.get("notes", []))
    atomic_write_json(session.store.root / "fidelity.json", merged)
    return merged


def feature_extractor(session: RunSession, selector_stage: StageResult) -> tuple[Any, str | None]:
    """``(extractor, None)``: local Inception weights when given (their errors are fatal),
    else the selector's standardised features; ``(None, why)`` when the selector has none."""
    from saadi_core.errors import ConfigError
    from saadi_core.evaluation.fidelity import inception_features, selector_features

    weights = session.config.fidelity.inception_weights
    if weights is not None:
        return inception_features(weights, device=session.context.device), None
    try:
        return selector_features(
            session.load_selector(selector_stage),
            standardise_on=session.dataset.train.image_tensor(),
        ), None
    except ConfigError as exc:
        return None, str(exc)


def fidelity_inputs(session: RunSession, loaded: Sequence[Sample], features: Any) -> Any:
    """One variant's samples against the real training images, with masks for segmentation
    and the condition's image (SSI: the inpainted source; SimuScope: the simulator frame) as
    the paired reference when every sample has one."""
    import torch

    from saadi_core.evaluation.fidelity import FidelityInputs

    train = session.dataset.train
    segmentation = session.dataset.task == "segmentation"
    controls = [s.condition.control for s in loaded]
    return FidelityInputs(
        real=train.image_tensor(),
        synthetic=torch.stack([s.image for s in loaded]),
        class_names=list(session.dataset.class_names),
        features=features,
        real_masks=torch.as_tensor(train.masks) if segmentation else None,
        synthetic_masks=torch.stack(
            [s.mask if s.mask is not None else s.condition.mask for s in loaded]
        )
        if segmentation
        else None,
        reference=torch.stack(controls) if all(c is not None for c in controls) else None,
    )
