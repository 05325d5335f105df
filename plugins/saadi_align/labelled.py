"""Training data of the unpaired aligners: the pool labelled by SAADi's threshold h, and the real
training images as samples under the generator's own conditions."""

from __future__ import annotations

from collections.abc import Sequence

from saadi_core.errors import PipelineError
from saadi_core.interfaces import AlignInputs, Condition, Generator, Sample


def threshold_of(inputs: AlignInputs, option: float | None) -> float:
    """h: the aligner's option, else the run's h (which falls back to the task's default when
    the pairing has none), else the pairing's threshold, else 0.5 (the paper's)."""
    if option is not None:
        return option
    if inputs.threshold is not None:
        return inputs.threshold
    value = getattr(getattr(inputs.pairing, "options", None), "threshold", None)
    return 0.5 if value is None else float(value)


def labelled_pool(inputs: AlignInputs, threshold: float) -> tuple[list[Sample], list[bool]]:
    """Every pool sample with its label ``score ≥ h``; without a scored pool, the distinct
    winners (good) and losers (bad) of the pairs."""
    if inputs.pool and len(inputs.scores) == len(inputs.pool):
        return list(inputs.pool), [float(s) >= threshold for s in inputs.scores]
    samples: list[Sample] = []
    labels: list[bool] = []
    seen: set[int] = set()
    for pair in inputs.pairs:
        for sample, good in ((pair.winner, True), (pair.loser, False)):
            if id(sample) not in seen:
                seen.add(id(sample))
                samples.append(sample)
                labels.append(good)
    return samples, labels


def real_samples(
    generator: Generator, inputs: AlignInputs, option: str = "real_fraction"
) -> list[Sample]:
    """The real training images as :class:`Sample` objects under the generator's conditions:
    by class for classification, by identical mask for mask-conditioned generators, under the one
    condition of a generator that draws its own mask. Anything else is refused clearly, naming the
    aligner ``option`` that asked for real images."""
    import numpy as np
    import torch

    dataset = inputs.dataset
    train = dataset.train
    conditions = generator.conditions(dataset)
    images = train.image_tensor()
    out: list[Sample] = []
    if dataset.task == "classification":
        by_class = {c.class_id: c for c in conditions if c.class_id is not None}
        for i, label in enumerate(train.labels):  # type: ignore[arg-type]
            cond = by_class.get(int(label))
            if cond is None:
                raise PipelineError(
                    f"{option}: generator '{generator.kind}' has no condition for class id {int(label)}"
                )
            out.append(Sample(image=images[i], condition=cond, generator="real", seed=0, index=i))
        return out
    by_mask: dict[bytes, Condition] = {}
    for c in conditions:
        if c.mask is not None:
            by_mask.setdefault(np.asarray(c.mask.cpu(), dtype=np.int64).tobytes(), c)
    lone = conditions[0] if len(conditions) == 1 and conditions[0].mask is None else None
    for i, mask in enumerate(train.masks):  # type: ignore[arg-type]
        cond = by_mask.get(np.asarray(mask, dtype=np.int64).tobytes(), lone)
        if cond is None:
            continue
        out.append(
            Sample(
                image=images[i],
                condition=cond,
                generator="real",
                seed=0,
                index=i,
                mask=torch.as_tensor(mask),
            )
        )
    if not out:
        raise PipelineError(
            f"{option}: no real training image matches a condition of generator '{generator.kind}' "
            f"(by class, by mask, or a single unconditional condition); set {option}: 0"
        )
    return out


def require(samples: Sequence[Sample], what: str, aligner: str) -> None:
    if not samples:
        raise PipelineError(
            f"aligner '{aligner}' found no {what} in the pool: lower the threshold h, enlarge the pool "
            "(pool.n_per_condition) or train the generator longer"
        )
