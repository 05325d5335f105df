"""Saving and loading generated samples (pool, evaluation sets) inside a stage directory.

Samples are stored in one ``torch.save`` file of plain tensors, strings and numbers so it loads
with ``weights_only=True`` (no pickled code). Images are kept as float32 — the selector scores the
exact pixels the generator produced, and hashes stay stable across save/load.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from saadi_core.interfaces import Condition, Sample

SAMPLES_FILE = "samples.pt"


def _condition_record(c: Condition) -> dict[str, Any]:
    return {
        "id": c.id,
        "class_id": c.class_id,
        "class_name": c.class_name,
        "prompt": c.prompt,
        "mask": c.mask,
        "control": c.control,
        "meta": dict(c.meta),
    }


def save_samples(directory: Path, samples: Sequence[Sample]) -> Path:
    """Write ``samples`` to ``directory/samples.pt``; conditions are stored once each."""
    conditions: dict[str, Condition] = {}
    for s in samples:
        conditions.setdefault(s.condition.id, s.condition)
    payload = {
        "conditions": [_condition_record(c) for c in conditions.values()],
        "images": torch.stack([s.image.detach().cpu().float() for s in samples])
        if samples
        else torch.empty(0),
        "masks": [s.mask.detach().cpu() if s.mask is not None else None for s in samples],
        "condition_ids": [s.condition.id for s in samples],
        "generators": [s.generator for s in samples],
        "seeds": [int(s.seed) for s in samples],
        "indices": [int(s.index) for s in samples],
        "meta": [dict(s.meta) for s in samples],
    }
    path = Path(directory) / SAMPLES_FILE
    torch.save(payload, path)
    return path


def load_samples(directory: Path) -> list[Sample]:
    """Inverse of :func:`save_samples`."""
    payload = torch.load(Path(directory) / SAMPLES_FILE, weights_only=True)
    conditions = {rec["id"]: Condition(**rec) for rec in payload["conditions"]}
    return [
        Sample(
            image=payload["images"][i],
            condition=conditions[cid],
            generator=payload["generators"][i],
            seed=payload["seeds"][i],
            index=payload["indices"][i],
            mask=payload["masks"][i],
            meta=payload["meta"][i],
        )
        for i, cid in enumerate(payload["condition_ids"])
    ]


def to_uint8_nhwc(images: torch.Tensor) -> Any:
    """``float [-1, 1] (N, 3, H, W)`` -> ``uint8 (N, H, W, 3)`` NumPy, for oracles and files."""
    return (
        ((images.detach().cpu().clamp(-1, 1) + 1.0) * 127.5)
        .round()
        .to(torch.uint8)
        .permute(0, 2, 3, 1)
        .numpy()
    )
