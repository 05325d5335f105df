"""What a ``simgen`` sample is asked to show: nothing (the paper), or a set of classes.

Unconditional (``conditioning: none``): one condition, ``uncond``; the pool is one group, so the
pairing stage pairs winners and losers across the whole pool — each sample brings its own mask,
there is no shared layout to pair within.

Class presence (``conditioning: class-presence``): the foreground classes a mask contains form
its *presence pattern* (``gallbladder+cystic_duct+tool``). Every pattern found in the training
masks is one condition and one row of the network's label embedding (added to the time
embedding); one extra row is the null label used for condition dropout and classifier-free
guidance. A pattern, not a per-class flag vector, because it is exactly what the training data
can teach: a combination never seen together has no examples to learn from, and asking for it
is refused clearly instead of producing an untrained mixture. The pool is spread evenly over the
patterns, so patterns with a rare class (the artery here) get as many samples as common ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from saadi_core.errors import PipelineError
from saadi_core.interfaces import Condition

UNCONDITIONAL_ID = "uncond"

#: a presence pattern: the sorted foreground class ids present in a mask
Pattern = tuple[int, ...]


def presence_pattern(mask: np.ndarray, num_classes: int) -> Pattern:
    """The foreground class ids (sorted) present in ``mask``."""
    counts = np.bincount(np.asarray(mask).ravel(), minlength=num_classes)
    return tuple(int(k) for k in range(1, num_classes) if counts[k] > 0)


def training_patterns(masks: np.ndarray, num_classes: int) -> tuple[list[Pattern], np.ndarray]:
    """The distinct presence patterns of ``masks`` (sorted by size, then class ids) and each
    mask's row in that list (``int64 (N,)``)."""
    per_mask = [presence_pattern(m, num_classes) for m in masks]
    patterns = sorted(set(per_mask), key=lambda p: (len(p), p))
    row = {p: i for i, p in enumerate(patterns)}
    return patterns, np.array([row[p] for p in per_mask], dtype=np.int64)


def pattern_id(pattern: Pattern, class_names: Sequence[str]) -> str:
    names = [class_names[k] for k in pattern] or [class_names[0]]
    return "presence:" + "+".join(names)


def presence_condition(
    pattern: Pattern, class_names: Sequence[str], train_masks: int | None = None
) -> Condition:
    """The condition asking for ``pattern``; ``meta`` holds its class ids and names (and, for the
    pool's conditions, how many training masks show it)."""
    meta: dict[str, object] = {
        "presence": list(pattern),
        "classes": [class_names[k] for k in pattern],
    }
    if train_masks is not None:
        meta["train_masks"] = int(train_masks)
    return Condition(id=pattern_id(pattern, class_names), meta=meta)


def unconditional() -> list[Condition]:
    return [Condition(id=UNCONDITIONAL_ID, meta={"conditioning": "none"})]


def pattern_of(condition: Condition, num_classes: int) -> Pattern:
    """The presence pattern a condition asks for (``meta["presence"]``: foreground class ids)."""
    raw = condition.meta.get("presence")
    if raw is None:
        raise PipelineError(
            f"simgen is class-presence conditioned, but condition '{condition.id}' has no meta['presence'] "
            "(the foreground class ids to show); use SimGenGenerator.presence_condition(...)"
        )
    ids = sorted({int(k) for k in raw})
    if any(k < 1 or k >= num_classes for k in ids):
        raise PipelineError(
            f"simgen: condition '{condition.id}' asks for class ids {ids} outside 1..{num_classes - 1}"
        )
    return tuple(ids)
