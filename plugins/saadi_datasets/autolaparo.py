"""AutoLaparo task 3, instrument and key-anatomy segmentation (``autolaparo``).

Layout as published (``docs/datasets.md`` cites the sources)::

    root/imgs/<clip:3><frame:3>.jpg    1920x1080, 6 frames from each of 300 clips
    root/masks/<clip:3><frame:3>.png   grey values as RGB: 0 background, 20/40 grasping forceps
                                       manipulator/shaft, 60/80 LigaSure, 100/120 dissecting
                                       forceps, 140/160 electric hook, 180 uterus

The mask values are not class ids: they are looked up in that table (``merge_parts`` folds each
tool's shaft and manipulator into one class). Split: the official one by clip — 001-170 train,
171-227 validation, 228-300 test (``val_split`` says where validation goes).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from saadi_core.data.cache import cached_load
from saadi_core.data.dataset import Dataset
from saadi_core.data.folders import list_images, read_image, resize_labels
from saadi_core.errors import DataError
from saadi_datasets.common import assemble, decode_mask, require_dir, sizes, track
from saadi_datasets.options import AutoLaparoOptions

TOOLS = ("grasping_forceps", "ligasure", "dissecting_forceps", "electric_hook")
#: mask grey value -> part name, in the order of the published table
PARTS: dict[int, str] = {0: "background"}
for _k, _tool in enumerate(TOOLS):
    PARTS[20 + 40 * _k] = f"{_tool}_manipulator"
    PARTS[40 + 40 * _k] = f"{_tool}_shaft"
PARTS[180] = "uterus"
#: official split by clip number (inclusive ranges)
SPLITS = {"train": (1, 170), "val": (171, 227), "test": (228, 300)}
_STEM = re.compile(r"^(\d{3})(\d{3})$")


def class_table(merge_parts: bool) -> tuple[list[str], dict[int, int]]:
    """Class names and mask value → class id."""
    if not merge_parts:
        return list(PARTS.values()), {value: k for k, value in enumerate(PARTS)}
    names = ["background", *TOOLS, "uterus"]
    table = {0: 0, 180: len(names) - 1}
    for k in range(len(TOOLS)):
        table[20 + 40 * k] = table[40 + 40 * k] = k + 1
    return names, table


def official_split(clip: int, path: Path) -> str:
    for split, (low, high) in SPLITS.items():
        if low <= clip <= high:
            return split
    raise DataError(f"image {path}: clip {clip:03d} is outside the published clips 001-300")


def _load(options: AutoLaparoOptions, context: object | None = None) -> Dataset:
    root = require_dir(Path(options.root).expanduser(), "dataset folder")
    image_dir = require_dir(root / "imgs", "AutoLaparo image folder")
    mask_dir = require_dir(root / "masks", "AutoLaparo mask folder")
    files = list_images(image_dir)
    if not files:
        raise DataError(f"no images in {image_dir}")
    names, table = class_table(options.merge_parts)
    items = []
    for f in files:
        match = _STEM.match(f.stem)
        if match is None:
            raise DataError(
                f"image {f} is not named <clip:3><frame:3> (e.g. 001025.jpg) as AutoLaparo task 3 names its frames"
            )
        mask = mask_dir / f"{f.stem}.png"
        if not mask.is_file():
            raise DataError(f"no mask for image {f} (expected {mask})")
        items.append((f, mask, official_split(int(match.group(1)), f)))
    s = options.image_size
    images = np.empty((len(items), s, s, 3), dtype=np.uint8)
    masks = np.empty((len(items), s, s), dtype=np.int64)
    originals = []
    for i, (f, mask, _) in enumerate(track(context, items, "load AutoLaparo frames", len(items))):
        images[i], original = read_image(f, s, options.fit)
        masks[i] = resize_labels(
            decode_mask(mask, table, original, False, "the AutoLaparo task 3 mask table"),
            s,
            options.fit,
        )
        originals.append(original)
    where = {"train": "train", "test": "test", "val": options.val_split}
    train = [i for i, it in enumerate(items) if where[it[2]] == "train"]
    test = [i for i, it in enumerate(items) if where[it[2]] == "test"]
    meta = {
        "layout": "AutoLaparo task 3 (imgs/ + masks/)",
        "split": f"official by clip: train 001-170, val 171-227 (-> {options.val_split}), test 228-300",
        "original_sizes": sizes(originals),
        "frames_per_official_split": {k: sum(it[2] == k for it in items) for k in SPLITS},
    }
    ids = [f.relative_to(root).as_posix() for f, _, _ in items]
    return assemble("autolaparo", names, images, masks, ids, train, test, root, meta)


def load(options: AutoLaparoOptions, context: object | None = None) -> Dataset:
    """Dataset builder registered as ``autolaparo`` (through the dataset cache)."""
    return cached_load("autolaparo", options, Path(options.root), lambda: _load(options, context))
