"""What the native-layout loaders share: file checks, mask decoding through a value table,
label-map resizing, video-wise splits and assembling the :class:`~saadi_core.data.Dataset`.

Every problem is a one-line :class:`~saadi_core.errors.DataError` naming the file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from saadi_core.data.dataset import Dataset, Split
from saadi_core.data.folders import open_image
from saadi_core.errors import DataError


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(
            f"{what} not found: {path}" if not path.exists() else f"{what} is not a folder: {path}"
        )
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def decode_mask(
    path: Path,
    table: Mapping[Any, int],
    expected_size: tuple[int, int],
    colour: bool,
    table_name: str,
    unknown: int | None = None,
) -> np.ndarray:
    """Class ids ``uint8 (H, W)`` of a mask whose pixel values (grey, ``colour=False``) or RGB
    colours (``colour=True``, table keys ``(r, g, b)``) are looked up in ``table``.

    Grey masks saved as RGB with three equal channels (as several datasets ship them) are read
    from one channel; a pixel outside the table is an error naming the file and value, or class
    ``unknown`` when given."""
    mask = open_image(path, "mask")
    if mask.size != expected_size:
        raise DataError(
            f"mask {path} is {mask.size[0]}x{mask.size[1]} but its image is {expected_size[0]}x{expected_size[1]}"
        )
    if colour:
        rgb = np.asarray(mask.convert("RGB"), dtype=np.int64)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        keys = [(r << 16) | (g << 8) | b for r, g, b in table]
    else:
        if mask.mode in ("RGB", "RGBA"):
            rgb = np.asarray(mask.convert("RGB"), dtype=np.int64)
            if not (
                np.array_equal(rgb[..., 0], rgb[..., 1])
                and np.array_equal(rgb[..., 0], rgb[..., 2])
            ):
                raise DataError(
                    f"mask {path} has colours, but {table_name} encodes classes as grey values"
                )
            codes = rgb[..., 0]
        else:
            codes = np.asarray(
                mask.convert("L") if mask.mode in ("P", "LA", "PA", "1") else mask, dtype=np.int64
            )
        keys = list(table)
    order = np.argsort(keys)
    known = np.asarray(keys, dtype=np.int64)[order]
    ids = np.asarray(list(table.values()), dtype=np.int64)[order]
    pos = np.clip(np.searchsorted(known, codes), 0, len(known) - 1)
    bad = known[pos] != codes
    if bad.any() and unknown is None:
        code = int(codes[bad][0])
        shown = (
            f"colour {[code >> 16, (code >> 8) & 255, code & 255]}" if colour else f"value {code}"
        )
        raise DataError(
            f"mask {path} has {shown} ({int(bad.sum())} px) that is not in {table_name}"
        )
    out = ids[pos]
    if bad.any():
        out[bad] = unknown
    return out.astype(np.uint8)


def group_split(
    groups: list[str], test_fraction: float, seed: int, what: str
) -> tuple[list[int], list[int], list[str]]:
    """Hold out a seeded ``test_fraction`` of the distinct ``groups`` (videos, patients) — never a
    frame of a held-out group in training. Returns train indices, test indices, test groups."""
    distinct = sorted(set(groups))
    if len(distinct) < 2:
        raise DataError(
            f"{what}: a split by video needs at least two videos, found {len(distinct)}"
        )
    n_test = min(max(round(len(distinct) * test_fraction), 1), len(distinct) - 1)
    held = sorted(np.random.default_rng(seed).permutation(distinct)[:n_test].tolist())
    test = [i for i, g in enumerate(groups) if g in held]
    return [i for i, g in enumerate(groups) if g not in held], test, held


def track(
    context: object | None, items: Iterable[Any], description: str, total: int
) -> Iterable[Any]:
    progress = getattr(context, "progress", None)
    return progress.track(items, description, total=total) if progress is not None else items


def sizes(originals: Iterable[tuple[int, int]]) -> dict[str, int]:
    from collections import Counter

    return {f"{w}x{h}": n for (w, h), n in Counter(originals).most_common()}


def assemble(
    name: str,
    class_names: list[str],
    images: np.ndarray,
    masks: np.ndarray,
    ids: list[str],
    train: list[int],
    test: list[int],
    source: Path,
    meta: dict[str, Any],
) -> Dataset:
    """A segmentation :class:`Dataset` from the loaded frames and the split indices."""
    for split, idx in (("train", train), ("test", test)):
        if not idx:
            raise DataError(
                f"{name}: the {split} split is empty ({meta.get('split', '')}) in {source}"
            )

    def split(idx: list[int]) -> Split:
        return Split(images=images[idx], masks=masks[idx], ids=[ids[i] for i in idx])

    return Dataset(
        name=name,
        task="segmentation",
        class_names=class_names,
        train=split(train),
        test=split(test),
        source=str(source),
        meta=meta,
    )
