"""Label preservation (segmentation): the run selector's mIoU against the masks the samples
carry, per variant, and aligned − base with a paired bootstrap interval over conditions."""

from __future__ import annotations

from typing import Any

from saadi_core.hookspecs import hookimpl
from saadi_core.stages.names import EVALUATE


@hookimpl
def saadi_evaluate_samples(evaluation: Any) -> dict[str, Any] | None:
    from saadi_core.evaluation.samples import label_counts, label_preservation, paired_groups

    dataset = evaluation.dataset
    if dataset.task != "segmentation":
        return None
    counts = {
        variant: label_counts(evaluation.selector, loaded, dataset.num_classes)
        for variant, loaded in evaluation.samples.items()
        if all(s.mask is not None for s in loaded)
    }
    if not counts:
        return None
    groups = (
        paired_groups(evaluation.samples["base"], evaluation.samples["aligned"])
        if "aligned" in counts
        else None
    )
    return {
        "label_preservation": label_preservation(
            counts, dataset.class_names, groups, seed=evaluation.seed
        )
    }


@hookimpl
def saadi_summary_entries(run: Any) -> dict[str, Any]:
    return {"label_preservation": run.outputs(EVALUATE).get("label_preservation")}


@hookimpl
def saadi_terminal_summary(summary: dict[str, Any], write: Any) -> None:
    if summary.get("label_preservation"):
        from saadi_core.summary import label_preservation_line

        write(label_preservation_line(summary["label_preservation"]))
