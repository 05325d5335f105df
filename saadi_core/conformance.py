"""Conformance checks: does an implementation honour the interface contracts?

The pipeline talks to plugins only through :mod:`saadi_core.interfaces`, so an implementation
that breaks a contract (scores outside ``[0, 1]``, pairs across conditions, samples that change
with batch composition, a save/load that loses state) fails far from its cause — in a DPO run
minutes later. These checks exercise each contract directly on tiny inputs and raise
``AssertionError`` with a message saying which rule broke, so plugin authors (and saadi's own
tests) can call them from any test::

    from saadi_core.conformance import check_selector

    def test_my_selector(saadi_tiny_dataset, saadi_context):
        check_selector(MySelector(MyOptions(), saadi_context), saadi_tiny_dataset)

Save/load round trips build a second instance as ``type(obj)(obj.options, obj.context)`` — the
same way the registry builds components — and restore it with ``load``/``restore``.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Real
from pathlib import Path
from typing import Any

import torch

from saadi_core.data.dataset import Dataset
from saadi_core.interfaces import (
    Aligner,
    AlignInputs,
    AlignResult,
    Condition,
    Generator,
    Pair,
    PairingStrategy,
    PairSet,
    Sample,
    Selector,
)

#: keys every PairSet.stats must hold (see :class:`saadi_core.interfaces.PairSet`)
PAIRSET_STATS_KEYS = (
    "n_pairs",
    "n_conditions",
    "conditions_without_winner",
    "conditions_without_loser",
)


def _fail(component: object, message: str) -> AssertionError:
    name = getattr(component, "kind", "") or type(component).__name__
    return AssertionError(f"{type(component).__name__} ('{name}'): {message}")


@contextmanager
def _scratch(work_dir: Path | None) -> Iterator[Path]:
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="saadi-conformance-") as tmp:
        yield Path(tmp)


def _fresh(component: Any) -> Any:
    """A new, unfitted instance built the way the registry builds one."""
    clone = type(component)(component.options, component.context)
    if getattr(component, "kind", ""):
        clone.kind = component.kind
    return clone


# --------------------------------------------------------------------------- samples


def dataset_samples(dataset: Dataset, n: int = 16, split: str = "test") -> list[Sample]:
    """The first ``n`` images of a split as :class:`Sample` objects conditioned on their own label
    (``class:<name>`` for classification, the image's mask for segmentation)."""
    part = getattr(dataset, split)
    n = min(n, len(part))
    images = part.image_tensor(slice(0, n))
    samples = []
    for i in range(n):
        if dataset.task == "classification":
            class_id = int(part.labels[i])
            name = dataset.class_names[class_id]
            cond = Condition(id=f"class:{name}", class_id=class_id, class_name=name)
            mask = None
        else:
            mask = torch.from_numpy(part.masks[i]).long()
            cond = Condition(id=f"mask:{split}/{part.ids[i]}", mask=mask)
        samples.append(
            Sample(
                image=images[i], condition=cond, generator="conformance", seed=0, index=i, mask=mask
            )
        )
    return samples


def _asked_otherwise(dataset: Dataset, samples: list[Sample]) -> list[Sample] | None:
    """The same images asked to show something else: the next class, or the next sample's mask
    (``None`` when there is nothing else to ask for)."""
    if dataset.task == "classification":
        if dataset.num_classes < 2:
            return None
        out = []
        for s in samples:
            other = (s.condition.class_id + 1) % dataset.num_classes
            name = dataset.class_names[other]
            cond = Condition(id=f"class:{name}", class_id=other, class_name=name)
            out.append(
                Sample(
                    image=s.image, condition=cond, generator=s.generator, seed=s.seed, index=s.index
                )
            )
        return out
    masks = [s.mask for s in samples]
    shifted = masks[1:] + masks[:1]
    if all(torch.equal(a, b) for a, b in zip(masks, shifted)):
        return None
    return [
        Sample(
            image=s.image,
            condition=Condition(id=f"{s.condition.id}/other", mask=m),
            generator=s.generator,
            seed=s.seed,
            index=s.index,
            mask=m,
        )
        for s, m in zip(samples, shifted)
    ]


# --------------------------------------------------------------------------- selector


def _check_scores(selector: Selector, scores: Any, n: int, what: str) -> list[float]:
    if not isinstance(scores, (list, tuple)):
        raise _fail(
            selector, f"score() must return a list of floats, got {type(scores).__name__} ({what})"
        )
    if len(scores) != n:
        raise _fail(selector, f"score() returned {len(scores)} scores for {n} samples ({what})")
    for i, s in enumerate(scores):
        if isinstance(s, bool) or not isinstance(s, Real):
            raise _fail(selector, f"score {i} is {type(s).__name__}, not a float ({what})")
        if not math.isfinite(float(s)) or not 0.0 <= float(s) <= 1.0:
            raise _fail(selector, f"score {i} = {s!r} is outside [0, 1] ({what})")
    return [float(s) for s in scores]


def check_selector(
    selector: Selector,
    dataset: Dataset,
    *,
    n: int = 16,
    fit: bool = True,
    work_dir: Path | None = None,
) -> None:
    """Fit on ``dataset`` (unless ``fit=False``), then check ``predict`` shapes and class range,
    ``score`` length, type and range ``[0, 1]``, that scores are repeatable and depend on the
    sample's condition, that ``score([])`` is ``[]``, and that ``save``/``load`` into a fresh
    instance reproduces predictions and scores."""
    if not isinstance(selector, Selector):
        raise _fail(selector, "is not a saadi_core.interfaces.Selector")
    if fit:
        selector.fit(dataset)
    samples = dataset_samples(dataset, n)
    images = torch.stack([s.image for s in samples])
    n = len(samples)

    pred = selector.predict(images)
    expected = (n,) if dataset.task == "classification" else (n, *images.shape[-2:])
    if not isinstance(pred, torch.Tensor) or tuple(pred.shape) != expected:
        shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise _fail(
            selector,
            f"predict() on {tuple(images.shape)} images must return shape {expected}, got {shape}",
        )
    if pred.is_floating_point() or pred.is_complex():
        raise _fail(selector, f"predict() must return integer class ids, got dtype {pred.dtype}")
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= dataset.num_classes):
        raise _fail(selector, f"predict() returned class ids outside [0, {dataset.num_classes})")

    scores = _check_scores(selector, selector.score(samples), n, "samples of the test split")
    again = _check_scores(selector, selector.score(samples), n, "second call")
    if not torch.allclose(torch.tensor(scores), torch.tensor(again), atol=1e-6):
        raise _fail(
            selector,
            "score() gives different scores for the same samples (dropout or batch-norm left in training mode?)",
        )
    other = _asked_otherwise(dataset, samples)
    if other is not None:
        other_scores = _check_scores(selector, selector.score(other), n, "relabelled samples")
        if torch.allclose(torch.tensor(scores), torch.tensor(other_scores), atol=1e-7):
            raise _fail(
                selector,
                "scores do not change when the same images are asked to show another condition; "
                "a score must rate the sample against its own condition",
            )
    try:
        empty = selector.score([])
    except Exception as exc:
        raise _fail(
            selector, f"score([]) must return [], raised {type(exc).__name__}: {exc}"
        ) from exc
    if list(empty) != []:
        raise _fail(selector, f"score([]) must return [], got {empty!r}")

    with _scratch(work_dir) as tmp:
        selector.save(tmp / "selector")
        restored = _fresh(selector)
        restored.load(tmp / "selector")
    if not torch.equal(restored.predict(images).cpu(), pred.cpu()):
        raise _fail(selector, "predictions differ after save() and load() into a fresh instance")
    loaded_scores = _check_scores(restored, restored.score(samples), n, "after load")
    if not torch.allclose(torch.tensor(scores), torch.tensor(loaded_scores), atol=1e-5):
        worst = max(abs(a - b) for a, b in zip(scores, loaded_scores))
        raise _fail(
            selector,
            f"scores differ after save() and load() into a fresh instance (max difference {worst:.3g})",
        )


# --------------------------------------------------------------------------- pairing


def synthetic_scored_samples() -> tuple[list[Sample], list[float]]:
    """Samples over five conditions covering the cases a strategy must handle: a normal mix,
    ties at the top and bottom, all above 0.5, all below 0.5, and a single sample. Conditions are
    interleaved so strategies cannot rely on input order."""
    per_condition = {
        "class:mixed": [0.9, 0.1, 0.6, 0.3, 0.75],
        "class:ties": [0.8, 0.8, 0.2, 0.2, 0.8, 0.2],
        "class:all-high": [0.7, 0.95, 0.6],
        "class:all-low": [0.05, 0.3, 0.2],
        "class:single": [0.9],
    }
    conditions = {
        cid: Condition(id=cid, class_id=k, class_name=cid.split(":")[1])
        for k, cid in enumerate(per_condition)
    }
    flat = [(cid, j, s) for cid, scores in per_condition.items() for j, s in enumerate(scores)]
    flat.sort(key=lambda t: (t[1], t[0]))  # interleave conditions
    samples, scores = [], []
    for cid, j, s in flat:
        image = torch.full((3, 4, 4), s * 2 - 1)
        samples.append(
            Sample(image=image, condition=conditions[cid], generator="conformance", seed=0, index=j)
        )
        scores.append(s)
    return samples, scores


def _pair_signature(pairset: PairSet, samples: Sequence[Sample]) -> list[tuple[int, int]]:
    position = {id(s): i for i, s in enumerate(samples)}
    return [(position[id(p.winner)], position[id(p.loser)]) for p in pairset.pairs]


def check_pairing(
    strategy: PairingStrategy, *, seed: int = 0, allow_cross_condition: bool = False
) -> None:
    """On :func:`synthetic_scored_samples`: the result is a :class:`PairSet` of :class:`Pair`
    whose winner and loser are distinct input samples with the input scores, winner score ≥ loser
    score, within one condition (unless ``allow_cross_condition``, for strategies documented to
    pair across conditions); ``stats`` holds the required keys with ``n_pairs == len(pairs)``;
    the same seed gives the same pairs; inputs are not modified; empty input gives no pairs."""
    if not isinstance(strategy, PairingStrategy):
        raise _fail(strategy, "is not a saadi_core.interfaces.PairingStrategy")
    samples, scores = synthetic_scored_samples()
    scores_before = list(scores)
    result = strategy.pairs(samples, scores, seed)
    if not isinstance(result, PairSet):
        raise _fail(strategy, f"pairs() must return a PairSet, got {type(result).__name__}")
    if scores != scores_before:
        raise _fail(strategy, "pairs() modified the scores it was given")

    score_of = {id(s): sc for s, sc in zip(samples, scores)}
    for k, pair in enumerate(result.pairs):
        if not isinstance(pair, Pair):
            raise _fail(strategy, f"pair {k} is a {type(pair).__name__}, not a Pair")
        if id(pair.winner) not in score_of or id(pair.loser) not in score_of:
            raise _fail(strategy, f"pair {k} holds a sample that was not in the input")
        if pair.winner is pair.loser:
            raise _fail(strategy, f"pair {k} pairs a sample with itself")
        if not allow_cross_condition and pair.winner.condition.id != pair.loser.condition.id:
            raise _fail(
                strategy,
                f"pair {k} pairs condition '{pair.winner.condition.id}' with "
                f"'{pair.loser.condition.id}'; Diffusion-DPO needs winner and loser under one condition",
            )
        if not math.isclose(pair.winner_score, score_of[id(pair.winner)]) or not math.isclose(
            pair.loser_score, score_of[id(pair.loser)]
        ):
            raise _fail(
                strategy,
                f"pair {k} reports scores ({pair.winner_score}, {pair.loser_score}) that are not its samples' scores",
            )
        if pair.winner_score < pair.loser_score:
            raise _fail(
                strategy,
                f"pair {k}: winner score {pair.winner_score} < loser score {pair.loser_score}",
            )

    _check_stats(strategy, result, "synthetic samples")
    repeat = strategy.pairs(samples, list(scores), seed)
    if _pair_signature(repeat, samples) != _pair_signature(result, samples):
        raise _fail(
            strategy,
            f"pairs() is not deterministic for seed {seed}: two calls gave different pairs",
        )

    try:
        empty = strategy.pairs([], [], seed)
    except Exception as exc:
        raise _fail(
            strategy,
            f"pairs([], [], seed) must return an empty PairSet, raised {type(exc).__name__}: {exc}",
        ) from exc
    if not isinstance(empty, PairSet) or len(empty.pairs) != 0:
        raise _fail(strategy, "pairs([], [], seed) must return an empty PairSet")
    _check_stats(strategy, empty, "empty input")


def _check_stats(strategy: PairingStrategy, result: PairSet, what: str) -> None:
    missing = [k for k in PAIRSET_STATS_KEYS if k not in result.stats]
    if missing:
        raise _fail(strategy, f"PairSet.stats lacks {', '.join(missing)} ({what})")
    if result.stats["n_pairs"] != len(result.pairs):
        raise _fail(
            strategy,
            f"stats n_pairs = {result.stats['n_pairs']} but {len(result.pairs)} pairs returned ({what})",
        )
    for key in ("conditions_without_winner", "conditions_without_loser"):
        if not isinstance(result.stats[key], (list, tuple)):
            raise _fail(strategy, f"stats {key} must be a list of condition ids ({what})")


# --------------------------------------------------------------------------- generator


def _check_samples(
    generator: Generator,
    dataset: Dataset,
    samples: Any,
    conditions: Sequence[Condition],
    n_per_condition: int,
    seed: int,
) -> None:
    if not isinstance(samples, list) or len(samples) != len(conditions) * n_per_condition:
        count = len(samples) if isinstance(samples, (list, tuple)) else type(samples).__name__
        raise _fail(
            generator,
            f"sample() of {len(conditions)} condition(s) x {n_per_condition} must return a list of "
            f"{len(conditions) * n_per_condition} samples, got {count}",
        )
    wanted = {c.id for c in conditions}
    seen: dict[str, list[int]] = {}
    for k, s in enumerate(samples):
        if not isinstance(s, Sample):
            raise _fail(generator, f"sample {k} is a {type(s).__name__}, not a Sample")
        img = s.image
        if (
            not isinstance(img, torch.Tensor)
            or img.dtype != torch.float32
            or img.dim() != 3
            or img.shape[0] != 3
        ):
            desc = (
                f"{img.dtype} {tuple(img.shape)}"
                if isinstance(img, torch.Tensor)
                else type(img).__name__
            )
            raise _fail(generator, f"sample {k}: image must be float32 (3, H, W), got {desc}")
        if not torch.isfinite(img).all() or img.min() < -1 or img.max() > 1:
            raise _fail(
                generator,
                f"sample {k}: image values must be finite and in [-1, 1], got [{img.min():.3g}, {img.max():.3g}]",
            )
        if s.mask is not None:
            if s.mask.dtype != torch.int64 or tuple(s.mask.shape) != tuple(img.shape[1:]):
                raise _fail(
                    generator,
                    f"sample {k}: mask must be int64 {tuple(img.shape[1:])}, got {s.mask.dtype} {tuple(s.mask.shape)}",
                )
            if s.mask.numel() and (
                int(s.mask.min()) < 0 or int(s.mask.max()) >= dataset.num_classes
            ):
                raise _fail(
                    generator,
                    f"sample {k}: mask holds class ids outside [0, {dataset.num_classes})",
                )
        elif dataset.task == "segmentation":
            raise _fail(
                generator, f"sample {k}: samples for a segmentation dataset must carry a mask"
            )
        if s.condition.id not in wanted:
            raise _fail(
                generator, f"sample {k} has condition '{s.condition.id}', which was not requested"
            )
        if s.seed != seed:
            raise _fail(
                generator,
                f"sample {k} records seed {s.seed}, but sample() was called with seed {seed}",
            )
        seen.setdefault(s.condition.id, []).append(s.index)
    for cid in wanted:
        if sorted(seen.get(cid, [])) != list(range(n_per_condition)):
            raise _fail(
                generator,
                f"condition '{cid}' must have samples with index 0..{n_per_condition - 1}, "
                f"got {sorted(seen.get(cid, []))}",
            )


def _by_key(samples: Sequence[Sample]) -> dict[tuple[str, int], Sample]:
    return {(s.condition.id, s.index): s for s in samples}


def _same_pixels(a: Sample, b: Sample) -> bool:
    if not torch.allclose(a.image, b.image, atol=1e-5):
        return False
    return (a.mask is None) == (b.mask is None) and (a.mask is None or torch.equal(a.mask, b.mask))


def _compare(
    component: object, reference: Sequence[Sample], other: Sequence[Sample], rule: str
) -> None:
    ref = _by_key(reference)
    for key, s in _by_key(other).items():
        if key in ref and not _same_pixels(ref[key], s):
            raise _fail(component, f"sample {key[1]} of condition '{key[0]}' changed: {rule}")


def check_generator(
    generator: Generator,
    dataset: Dataset,
    *,
    n_per_condition: int = 2,
    max_conditions: int = 3,
    seed: int = 0,
    fit: bool = True,
    work_dir: Path | None = None,
) -> None:
    """Fit on ``dataset`` (unless ``fit=False``); check that ``conditions`` is a non-empty,
    repeatable list of uniquely named :class:`Condition`; that ``sample`` returns
    ``len(conditions) * n_per_condition`` :class:`Sample` with float32 ``(3, H, W)`` images in
    ``[-1, 1]`` (int64 masks of the same size; required on segmentation datasets), the requested
    seed and indices ``0..n-1``; that sample ``i`` of condition ``c`` depends only on
    ``(seed, c, i)`` — not on ``n_per_condition`` nor on which other conditions are in the call —
    and does change with the seed; and that ``save``/``load`` into a fresh instance reproduces it."""
    if not isinstance(generator, Generator):
        raise _fail(generator, "is not a saadi_core.interfaces.Generator")
    if fit:
        generator.fit(dataset)
    conditions = generator.conditions(dataset)
    if not isinstance(conditions, list) or not conditions:
        raise _fail(generator, f"conditions() must return a non-empty list, got {conditions!r}")
    if not all(isinstance(c, Condition) for c in conditions):
        raise _fail(generator, "conditions() must return Condition objects")
    ids = [c.id for c in conditions]
    if len(set(ids)) != len(ids):
        raise _fail(generator, "condition ids must be unique; pairing groups samples by them")
    if [c.id for c in generator.conditions(dataset)] != ids:
        raise _fail(generator, "conditions() is not deterministic for the same dataset")

    chosen = conditions[:max_conditions]
    first = generator.sample(chosen, n_per_condition, seed)
    _check_samples(generator, dataset, first, chosen, n_per_condition, seed)
    _compare(
        generator,
        first,
        generator.sample(chosen, n_per_condition, seed),
        f"two calls with seed {seed} must give identical samples",
    )
    more = generator.sample(chosen, n_per_condition + 1, seed)
    _check_samples(generator, dataset, more, chosen, n_per_condition + 1, seed)
    _compare(generator, first, more, "a sample must not depend on n_per_condition")
    if len(chosen) > 1:
        alone = generator.sample(chosen[-1:], n_per_condition, seed)
        _compare(
            generator, first, alone, "a sample must not depend on the other conditions in the call"
        )
    reseeded = _by_key(generator.sample(chosen, n_per_condition, seed + 1))
    if all(key in reseeded and _same_pixels(s, reseeded[key]) for key, s in _by_key(first).items()):
        raise _fail(
            generator,
            f"seeds {seed} and {seed + 1} give identical samples; sample() ignores its seed",
        )

    with _scratch(work_dir) as tmp:
        generator.save(tmp / "generator")
        restored = _fresh(generator)
        restored.load(tmp / "generator")
    _compare(
        generator,
        first,
        restored.sample(chosen, n_per_condition, seed),
        "save() then load() into a fresh instance must reproduce the samples",
    )


# --------------------------------------------------------------------------- aligner


def _synthetic_pairs(pool: Sequence[Sample]) -> tuple[PairSet, list[float]]:
    """Alternating scores inside each condition and every (high, low) pair within a condition:
    enough structure for an aligner to run, independent of any selector or pairing plugin."""
    scores = [0.9 if s.index % 2 == 0 else 0.1 for s in pool]
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(pool):
        groups.setdefault(s.condition.id, []).append(i)
    pairs = [
        Pair(pool[w], pool[l], scores[w], scores[l])
        for members in groups.values()
        for w in members
        if scores[w] >= 0.5
        for l in members
        if scores[l] < 0.5
    ]
    stats = {
        "n_pairs": len(pairs),
        "n_conditions": len(groups),
        "conditions_without_winner": [],
        "conditions_without_loser": [],
    }
    return PairSet(pairs=pairs, stats=stats), scores


def check_aligner(
    aligner: Aligner,
    generator: Generator,
    dataset: Dataset,
    *,
    n_per_condition: int = 4,
    max_conditions: int = 2,
    seed: int = 0,
    fit_generator: bool = True,
    work_dir: Path | None = None,
) -> None:
    """Align ``generator`` (fitted on ``dataset`` first unless ``fit_generator=False``) on
    synthetic within-condition pairs from its own pool, then check that ``align`` returns an
    :class:`AlignResult` with a :class:`Generator` and a list-of-dicts history, and that
    ``save`` + ``restore`` onto a freshly *loaded base* generator reproduces the aligned samples.

    Needs a generator that can be aligned by this aligner (for diffusion aligners one exposing
    :meth:`Generator.diffusion_target`) and is small enough to train in a test.
    """
    if not isinstance(aligner, Aligner):
        raise _fail(aligner, "is not a saadi_core.interfaces.Aligner")
    if fit_generator:
        generator.fit(dataset)
    conditions = generator.conditions(dataset)[:max_conditions]
    with _scratch(work_dir) as tmp:
        generator.save(tmp / "base")
        pool = generator.sample(conditions, n_per_condition, seed)
        pairs, scores = _synthetic_pairs(pool)
        if not pairs.pairs:
            raise AssertionError("check_aligner needs n_per_condition >= 2 to build pairs")
        inputs = AlignInputs(pairs=pairs, dataset=dataset, pool=pool, scores=scores, seed=seed)
        result = aligner.align(generator, inputs, tmp / "work")
        if not isinstance(result, AlignResult) or not isinstance(result.generator, Generator):
            raise _fail(
                aligner,
                f"align() must return an AlignResult holding a Generator, got {type(result).__name__}",
            )
        if not isinstance(result.history, list) or not all(
            isinstance(h, dict) for h in result.history
        ):
            raise _fail(
                aligner, "AlignResult.history must be a list of dicts (one per logged step)"
            )
        aligned = result.generator.sample(conditions, 2, seed + 1)

        aligner.save(result, tmp / "aligned")
        base = _fresh(generator)
        base.load(tmp / "base")
        restored = aligner.restore(base, tmp / "aligned")
        if not isinstance(restored, Generator):
            raise _fail(
                aligner, f"restore() must return a Generator, got {type(restored).__name__}"
            )
        _compare(
            aligner,
            aligned,
            restored.sample(conditions, 2, seed + 1),
            "restore() onto the saved base generator must reproduce the aligned generator's samples",
        )
