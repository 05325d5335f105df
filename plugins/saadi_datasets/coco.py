"""COCO instance/semantic annotations (``coco``) painted into semantic label maps.

Segmentations are decoded by ``pycocotools`` — polygons, uncompressed RLE (``counts`` a list) and
compressed RLE (``counts`` a string) alike, whatever ``iscrowd`` says (Endoscapes2023 stores RLE
on ordinary instances). Instances are painted largest first, so a small structure lying on a
large one (a duct on the gallbladder, a tool over an organ) stays visible; class ids follow the
categories' ids in sorted order after the background 0. Images listed without annotations are
kept as all-background frames (real datasets have them); images on disk that the JSON does not
list are ignored (Endoscapes ships every video frame next to the few annotated ones).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from saadi_core.data.cache import cached_load
from saadi_core.data.dataset import Dataset
from saadi_core.data.folders import read_image, stratified_split
from saadi_core.errors import ConfigError, DataError
from saadi_datasets.common import assemble, require_dir, require_file, sizes, track
from saadi_datasets.options import CocoOptions


def read_coco(path: Path) -> Any:
    """A ``pycocotools.coco.COCO`` index of ``path`` after checking the file's structure."""
    require_file(path, "COCO annotation file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"COCO annotation file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(
            f"COCO annotation file {path} must hold an object with images, annotations and categories"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"COCO annotation file {path} has no '{key}' list")
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not {"id", "file_name", "width", "height"} <= set(image):
            raise DataError(
                f"COCO annotation file {path}: images[{i}] needs id, file_name, width and height"
            )
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not {
            "id",
            "image_id",
            "category_id",
            "segmentation",
        } <= set(ann):
            raise DataError(
                f"COCO annotation file {path}: annotations[{i}] needs id, image_id, category_id and segmentation"
            )
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not {"id", "name"} <= set(cat):
            raise DataError(f"COCO annotation file {path}: categories[{i}] needs id and name")
    if not data["categories"]:
        raise DataError(f"COCO annotation file {path} has no categories")
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ConfigError(
            f"reading {path} needs pycocotools (a dependency of saadi): pip install pycocotools"
        ) from None
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    images = {img["id"] for img in data["images"]}
    cats = {c["id"] for c in data["categories"]}
    for ann in data["annotations"]:
        if ann["image_id"] not in images:
            raise DataError(
                f"COCO annotation file {path}: annotation {ann['id']} refers to image id {ann['image_id']}, which is not listed"
            )
        if ann["category_id"] not in cats:
            raise DataError(
                f"COCO annotation file {path}: annotation {ann['id']} has category id {ann['category_id']}, which is not listed"
            )
    return coco


def category_names(coco: Any) -> list[tuple[int, str]]:
    return sorted((int(c["id"]), str(c["name"])) for c in coco.dataset["categories"])


def paint(
    coco: Any, image: dict[str, Any], class_of: dict[int, int], skip_crowd: bool, path: Path
) -> np.ndarray:
    """``uint8 (H, W)`` label map of one image: its instances painted largest first."""
    h, w = int(image["height"]), int(image["width"])
    label = np.zeros((h, w), dtype=np.uint8)
    layers = []
    for ann in coco.imgToAnns.get(image["id"], []):
        cls = class_of.get(int(ann["category_id"]))
        if cls is None or (skip_crowd and ann.get("iscrowd")):
            continue
        segm = ann["segmentation"]
        if isinstance(segm, dict) and list(segm.get("size", [h, w])) != [h, w]:
            raise DataError(
                f"COCO annotation file {path}: annotation {ann['id']} is an RLE of size {segm.get('size')} "
                f"but image {image['file_name']} is {h}x{w} (height x width)"
            )
        try:
            binary = coco.annToMask(ann).astype(bool)
        except Exception as exc:  # noqa: BLE001 - pycocotools raises TypeError/ValueError/… on a malformed segmentation
            raise DataError(
                f"COCO annotation file {path}: annotation {ann['id']} of {image['file_name']} has a malformed segmentation "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        layers.append((int(binary.sum()), cls, binary))
    for _, cls, binary in sorted(layers, key=lambda t: -t[0]):
        label[binary] = cls
    return label


def load_coco_split(
    path: Path,
    images_dir: Path,
    keep: dict[int, int],
    size: int,
    fit: str,
    skip_crowd: bool,
    context: object | None,
) -> tuple[np.ndarray, np.ndarray, list[str], list[tuple[int, int]], int]:
    """Images, resized label maps, ids, original sizes and the number of frames without any
    annotation, for every image listed in one COCO file."""
    from saadi_core.data.folders import resize_labels

    coco = read_coco(path)
    records = sorted(coco.dataset["images"], key=lambda r: str(r["file_name"]))
    if not records:
        raise DataError(f"COCO annotation file {path} lists no images")
    images = np.empty((len(records), size, size, 3), dtype=np.uint8)
    masks = np.empty((len(records), size, size), dtype=np.int64)
    originals: list[tuple[int, int]] = []
    unlabelled = 0
    for i, record in enumerate(
        track(context, records, f"load {path.parent.name}/{path.name}", len(records))
    ):
        file = images_dir / str(record["file_name"])
        if not file.is_file():
            raise DataError(f"image {file} listed in {path} not found")
        images[i], original = read_image(file, size, fit)
        if original != (int(record["width"]), int(record["height"])):
            raise DataError(
                f"image {file} is {original[0]}x{original[1]} but {path} says {record['width']}x{record['height']}"
            )
        label = paint(coco, record, keep, skip_crowd, path)
        unlabelled += int(not label.any())
        masks[i] = resize_labels(label, size, fit)
        originals.append(original)
    ids = [(images_dir / str(r["file_name"])).as_posix() for r in records]
    return images, masks, ids, originals, unlabelled


def class_table(
    categories: list[tuple[int, str]], wanted: list[str] | None, path: Path
) -> tuple[list[str], dict[int, int]]:
    """Class names (background first) and category id → class id, keeping ``wanted`` only."""
    names = [n for _, n in categories]
    if wanted is not None:
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise DataError(
                f"COCO annotation file {path} has no category {unknown[0]!r} (it has: {', '.join(names)})"
            )
    kept = [(cid, n) for cid, n in categories if wanted is None or n in wanted]
    if "background" in [n for _, n in kept]:
        raise DataError(
            f"COCO annotation file {path}: a category is named 'background', which saadi reserves for id 0"
        )
    return ["background", *[n for _, n in kept]], {
        cid: k for k, (cid, _) in enumerate(kept, start=1)
    }


def _load(options: CocoOptions, context: object | None = None) -> Dataset:
    root = require_dir(Path(options.root).expanduser(), "dataset folder")
    train_file = (
        options.annotations if options.annotations.is_absolute() else root / options.annotations
    )
    images_dir = require_dir(root / options.images_dir, "image folder")
    categories = category_names(read_coco(train_file))
    names, keep = class_table(categories, options.classes, train_file)
    s, fit = options.image_size, options.fit
    images, masks, ids, originals, unlabelled = load_coco_split(
        train_file, images_dir, keep, s, fit, options.skip_crowd, context
    )
    ids = [Path(i).relative_to(root).as_posix() if Path(i).is_relative_to(root) else i for i in ids]
    if options.test_annotations is not None:
        test_file = (
            options.test_annotations
            if options.test_annotations.is_absolute()
            else root / options.test_annotations
        )
        if category_names(read_coco(test_file)) != categories:
            raise DataError(
                f"COCO annotation file {test_file} has other categories than {train_file}"
            )
        test_dir = require_dir(
            root / (options.test_images_dir or options.images_dir), "test image folder"
        )
        t_images, t_masks, t_ids, t_originals, t_unlabelled = load_coco_split(
            test_file, test_dir, keep, s, fit, options.skip_crowd, context
        )
        t_ids = [
            Path(i).relative_to(root).as_posix() if Path(i).is_relative_to(root) else i
            for i in t_ids
        ]
        n = len(ids)
        images, masks = np.concatenate([images, t_images]), np.concatenate([masks, t_masks])
        ids, originals, unlabelled = ids + t_ids, originals + t_originals, unlabelled + t_unlabelled
        train, test = list(range(n)), list(range(n, len(ids)))
        how = f"files {train_file.name} (train) and {test_file.name} (test)"
    else:
        present = np.stack([(masks == k).any(axis=(1, 2)) for k in range(len(names))], axis=1)
        frequency = present.sum(axis=0)
        strata = np.array(
            [int(np.flatnonzero(row)[np.argmin(frequency[row])]) for row in present], dtype=np.int64
        )
        parts = stratified_split(strata, options.test_fraction, options.seed)
        train, test = parts["train"], parts["test"]
        how = f"stratified test_fraction={options.test_fraction} seed={options.seed}"
    meta = {
        "layout": "coco",
        "split": how,
        "original_sizes": sizes(originals),
        "frames_without_labels": unlabelled,
    }
    return assemble(root.name, names, images, masks, ids, train, test, root, meta)


def load(options: CocoOptions, context: object | None = None) -> Dataset:
    """Dataset builder registered as ``coco`` (through the dataset cache)."""
    return cached_load("coco", options, Path(options.root), lambda: _load(options, context))
