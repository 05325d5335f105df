"""Class presence (segmentation): the share of real training masks and of each variant's sample
masks showing each class, with a warning for every class alignment made rarer."""

from __future__ import annotations

from typing import Any

from saadi_core.hookspecs import hookimpl
from saadi_core.stages.names import EVALUATE


@hookimpl
def saadi_evaluate_samples(evaluation: Any) -> dict[str, Any] | None:
    from saadi_core.evaluation.metrics import class_presence, presence_drops

    dataset = evaluation.dataset
    if dataset.task != "segmentation":
        return None
    names = dataset.class_names
    presence = {"real": class_presence(dataset.train.masks, names)}
    for variant, loaded in evaluation.samples.items():
        masks = [s.mask.numpy() for s in loaded if s.mask is not None]
        if masks:
            presence[variant] = class_presence(masks, names)
    warnings = presence_drops(presence)
    for warning in warnings:
        evaluation.warn(warning)
    return {"class_presence": presence, "warnings": warnings}


@hookimpl
def saadi_summary_entries(run: Any) -> dict[str, Any]:
    return {"class_presence": run.outputs(EVALUATE).get("class_presence")}
