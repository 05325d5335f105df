"""Per-sample judgements shared by stages, evaluation plugins and benchmarks: the oracle's
verdict, how base and aligned samples pair up, and how a segmenter reads a sample's mask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from saadi_core.interfaces import Sample, Selector


def oracle_pass(dataset: Any, samples: Sequence[Sample]) -> list[bool] | None:
    """The dataset oracle's verdict on each sample (does the image show its class, or its mask?);
    ``None`` for a dataset without an oracle (real data)."""
    oracle = dataset.oracle
    if oracle is None:
        return None
    import numpy as np
    import torch

    from saadi_core.samples_io import to_uint8_nhwc

    images = to_uint8_nhwc(torch.stack([s.image for s in samples]))
    if dataset.task == "classification":
        labels = np.array([s.condition.class_id for s in samples], dtype=np.int64)
        return [bool(v) for v in oracle.check(images, labels=labels)]
    masks = torch.stack([s.mask for s in samples]).numpy()
    return [bool(v) for v in oracle.check(images, masks=masks)]


def paired_groups(base: Sequence[Sample], aligned: Sequence[Sample]) -> Any:
    """The condition index ``(N,)`` of each sample when base and aligned are paired sample by
    sample (same condition and index, same order — the sample stages guarantee it), else
    ``None``: the grouping every paired bootstrap of the two variants resamples."""
    import numpy as np

    keys = [(s.condition.id, s.index) for s in base]
    if keys != [(s.condition.id, s.index) for s in aligned]:
        return None
    ids = {c: k for k, c in enumerate(dict.fromkeys(c for c, _ in keys))}
    return np.array([ids[c] for c, _ in keys])


def label_counts(
    selector: Selector, samples: Sequence[Sample], num_classes: int, batch_size: int = 64
) -> Any:
    """Per sample, the pixel counts ``(N, 3, K)`` (:func:`~saadi_core.evaluation.metrics.iou_counts`)
    of the selector's prediction against the mask the sample carries."""
    import numpy as np
    import torch

    from saadi_core.evaluation.metrics import iou_counts

    counts = []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            batch = samples[start : start + batch_size]
            predicted = selector.predict(torch.stack([s.image for s in batch])).cpu().numpy()
            counts += [
                iou_counts(pred, s.mask.numpy(), num_classes) for s, pred in zip(batch, predicted)
            ]  # type: ignore[union-attr]
    return np.stack(counts)


def label_preservation(
    counts_by_variant: dict[str, Any], class_names: Sequence[str], groups: Any = None, seed: int = 0
) -> dict[str, Any]:
    """How well each variant's images still show the masks they carry, in the run selector's
    eyes: mIoU over the classes the masks show (with and without background) and per class —
    SimuScope's label-preservation metric, meaningful for any generator whose samples carry a
    mask. With ``groups`` (:func:`paired_groups` of base and aligned), aligned − base with a
    paired bootstrap interval (:func:`~saadi_core.evaluation.stats.paired_bootstrap`)."""
    from saadi_core.evaluation.metrics import mean_iou
    from saadi_core.evaluation.stats import paired_bootstrap

    result: dict[str, Any] = {}
    for variant, counts in counts_by_variant.items():
        miou, per_class = mean_iou(counts)
        result[variant] = {
            "miou": miou,
            "miou_foreground": mean_iou(counts, exclude=[0])[0],
            "per_class_iou": {class_names[c]: v for c, v in per_class.items()},
        }
    if groups is not None:
        base, aligned = counts_by_variant["base"], counts_by_variant["aligned"]
        result["change"] = paired_bootstrap(
            groups,
            lambda rows: mean_iou(base[rows])[0],
            lambda rows: mean_iou(aligned[rows])[0],
            seed=seed,
        )
    return result
