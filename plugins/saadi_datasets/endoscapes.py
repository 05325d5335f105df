"""Endoscapes2023, segmentation subset (``endoscapes``).

Layout as published (``docs/datasets.md`` cites the sources)::

    root/train_seg/annotation_coco.json   + <video>_<frame>.jpg (854x480)
    root/val_seg/annotation_coco.json     + ...
    root/test_seg/annotation_coco.json    + ...

Each ``*_seg`` folder holds far more frames than the JSON lists (the subset's videos at 1 fps);
only the listed ones are annotated and loaded. Segmentations are RLE on ordinary (non-crowd)
instances in the release, polygons in some re-exports — ``pycocotools`` decodes either. Classes:
the file's six categories (cystic_plate, calot_triangle, cystic_artery, cystic_duct, gallbladder,
tool) after background. Splits: the official video-wise ones; ``val_split`` says where val goes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from saadi_core.data.cache import cached_load
from saadi_core.data.dataset import Dataset
from saadi_core.errors import DataError
from saadi_datasets.coco import category_names, class_table, load_coco_split, read_coco
from saadi_datasets.common import assemble, require_dir, require_file, sizes
from saadi_datasets.options import EndoscapesOptions

ANNOTATION = "annotation_coco.json"
SPLIT_DIRS = {"train": "train_seg", "val": "val_seg", "test": "test_seg"}


def _load(options: EndoscapesOptions, context: object | None = None) -> Dataset:
    root = require_dir(Path(options.root).expanduser(), "dataset folder")
    wanted = ["train", "test"] + (["val"] if options.val_split != "drop" else [])
    files = {
        s: require_file(
            require_dir(root / SPLIT_DIRS[s], f"Endoscapes {s} folder") / ANNOTATION,
            f"Endoscapes {s} annotation file",
        )
        for s in wanted
    }
    categories = category_names(read_coco(files["train"]))
    names, keep = class_table(categories, options.classes, files["train"])
    parts: dict[str, tuple] = {}
    for split, path in files.items():
        if split != "train" and category_names(read_coco(path)) != categories:
            raise DataError(f"{path} has other categories than {files['train']}")
        parts[split] = load_coco_split(
            path, path.parent, keep, options.image_size, options.fit, False, context
        )
    order = [
        "train",
        *(["val"] if options.val_split == "train" else []),
        "test",
        *(["val"] if options.val_split == "test" else []),
    ]
    images = np.concatenate([parts[s][0] for s in order])
    masks = np.concatenate([parts[s][1] for s in order])
    ids = [Path(i).relative_to(root).as_posix() for s in order for i in parts[s][2]]
    bounds, start = {}, 0
    for s in order:
        bounds[s] = list(range(start, start + len(parts[s][2])))
        start += len(parts[s][2])
    train = bounds["train"] + (bounds["val"] if options.val_split == "train" else [])
    test = bounds["test"] + (bounds["val"] if options.val_split == "test" else [])
    meta = {
        "layout": "Endoscapes2023 segmentation subset (COCO)",
        "split": f"official train_seg/val_seg/test_seg (val -> {options.val_split})",
        "original_sizes": sizes(o for s in order for o in parts[s][3]),
        "frames_without_labels": sum(parts[s][4] for s in order),
        "frames_per_official_split": {s: len(parts[s][2]) for s in order},
    }
    return assemble("endoscapes", names, images, masks, ids, train, test, root, meta)


def load(options: EndoscapesOptions, context: object | None = None) -> Dataset:
    """Dataset builder registered as ``endoscapes`` (through the dataset cache)."""
    return cached_load("endoscapes", options, Path(options.root), lambda: _load(options, context))
