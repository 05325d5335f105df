"""Which conditions the held-out evaluation samples are generated on (``evaluation.conditions``).

Why this exists: a mask-conditioned generator fine-tuned on a few hundred images learns to
reproduce the training image a training mask was drawn from. Evaluated on those same masks, a
copy passes every check of what the image shows — and any training on the real images (the
``train-longer`` control, or DPO through its real-image anchor) pulls samples toward the copies,
so the pass rate rises without the generator rendering anything better. Evaluated on layouts no
model has seen, there is nothing to copy: the pass rate measures rendering.

The generator builds the conditions as it always does, from a view of the dataset whose train
split is the unseen layouts; generators whose conditions are not layouts (class prompts, presence
patterns, unconditional) keep their training conditions, since those hold nothing to copy.

The aligners' validation (which adapter state to keep) follows the evaluation: validated on the
training masks it keeps the states that copy best. With evaluation on unseen layouts it
validates on the *other* unseen layouts — never on the evaluation's own, so the kept state is not
chosen on the samples it is judged on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from saadi_core.data.dataset import Dataset
from saadi_core.errors import ConfigError

TRAINING = "training"
UNSEEN = "unseen-layouts"


def resolve(requested: str, dataset: Dataset) -> str:
    """``'training'`` or ``'unseen-layouts'`` for ``evaluation.conditions`` on ``dataset``:
    ``'auto'`` picks unseen layouts when the dataset has them. Asking for unseen layouts on a
    dataset without them is a one-line :class:`ConfigError` (checked before any training)."""
    has_layouts = dataset.layouts is not None and len(dataset.layouts) > 0
    if requested == "auto":
        return UNSEEN if has_layouts else TRAINING
    if requested == UNSEEN and not has_layouts:
        raise ConfigError(
            f"evaluation.conditions is 'unseen-layouts', but dataset '{dataset.name}' ({dataset.source}) has no "
            "unseen layouts (toy-seg draws them: dataset.options.n_layouts); use 'training' or 'auto'"
        )
    return requested


def evaluation_layouts(evaluation: Any, dataset: Dataset) -> int | None:
    """``evaluation.layouts`` (of an :class:`~saadi_core.config.EvaluationConfig`) as it
    applies: ``None`` unless the evaluation is on unseen layouts; more layouts than the dataset
    draws is a one-line :class:`ConfigError` (checked before any training)."""
    layouts = evaluation.layouts
    if resolve(evaluation.conditions, dataset) != UNSEEN or layouts is None:
        return None
    assert dataset.layouts is not None
    if layouts > len(dataset.layouts):
        raise ConfigError(
            f"evaluation.layouts is {layouts}, but dataset '{dataset.name}' ({dataset.source}) draws "
            f"{len(dataset.layouts)} unseen layouts; lower it or raise dataset.options.n_layouts"
        )
    return layouts


def evaluation_conditions(
    generator: Any, dataset: Dataset, mode: str, layouts: int | None = None
) -> tuple[list[Any], str]:
    """The conditions to generate evaluation samples on, and what they are (``mode``, or
    ``'training'`` when the generator's conditions carry no masks). The layouts' conditions are
    built first: for a mask-conditioned generator they are the answer, so the training
    conditions are not built for nothing (some generators draw them: casdm's generated
    layouts).

    ``layouts`` (``evaluation.layouts``) asks for a condition on each of the first ``layouts``
    unseen layouts instead of the generator's own pick of them (``ssi``: its ``n_conditions``): the samples
    of one layout pass or fail together, so many layouts with few samples each measure
    rendering more precisely than a few layouts with many."""
    if mode == UNSEEN:
        assert dataset.layouts is not None
        if layouts is None:
            unseen = generator.conditions(dataclasses.replace(dataset, train=dataset.layouts))
        else:
            unseen = _covering(generator, dataset, list(range(layouts)))
        if any(c.mask is not None for c in unseen):
            return unseen, UNSEEN
    return generator.conditions(dataset), TRAINING


def validation_conditions(
    generator: Any, dataset: Dataset, mode: str, layouts: int | None = None
) -> tuple[list[Any], str]:
    """The conditions an aligner validates on, and what they are: with ``mode`` unseen layouts,
    conditions built from *every* layout whose mask no evaluation condition uses (``'training'``
    when the generator's conditions carry no masks or every layout is used).

    Every one, not the generator's usual pick (``ssi``: its ``n_conditions``): an adapter helps some layouts
    and hurts others, and on toy-seg two sets of 16 layouts disagreed about the same adapter
    (docs/benchmarks.md), so the state kept should be judged on as many layouts as there are.
    The generator is asked again for the layouts it left out until it covers them all or adds
    none (a generator that draws its own masks), so its own way of building a condition holds."""
    evaluation, kind = evaluation_conditions(generator, dataset, mode, layouts)
    if kind != UNSEEN:
        return evaluation, kind
    assert dataset.layouts is not None
    used = _mask_keys(evaluation)
    rest = [i for i, m in enumerate(dataset.layouts.masks) if m.tobytes() not in used]
    if not rest:
        return generator.conditions(dataset), TRAINING
    return _covering(generator, dataset, rest), UNSEEN


def _covering(generator: Any, dataset: Dataset, indices: list[int]) -> list[Any]:
    """Conditions on the layouts ``indices``, built by the generator itself: it is asked again
    for the layouts its pick left out until it covers them all or adds none (a generator that
    draws its own masks)."""
    assert dataset.layouts is not None
    conditions: list[Any] = []
    rest = indices
    while rest:
        view = dataclasses.replace(dataset, train=dataset.layouts.subset(rest))
        built = generator.conditions(view)
        conditions += built
        covered = _mask_keys(built)
        left = [i for i in rest if dataset.layouts.masks[i].tobytes() not in covered]
        if len(left) == len(rest):
            break
        rest = left
    return conditions


def _mask_keys(conditions: list[Any]) -> set[bytes]:
    return {c.mask.numpy().tobytes() for c in conditions if c.mask is not None}
