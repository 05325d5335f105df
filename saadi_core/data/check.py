"""``saadi data check PATH``: validate a dataset folder and summarise it, before any training.

The check loads the folder with the same loader a run uses (so it finds exactly the problems a
run would hit, each as a one-line :class:`~saadi_core.errors.DataError` naming the file) and
returns a JSON-serialisable summary: layout, classes, images per class and split, pixel shares
for masks, original image sizes and where the split came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from saadi_core.data.dataset import Dataset
from saadi_core.data.folders import list_images, load_folder_cls, load_folder_seg
from saadi_core.data.options import FolderClsOptions, FolderSegOptions
from saadi_core.errors import ConfigError, DataError

Layout = Literal["auto", "cls", "classification", "seg", "segmentation"]
_LAYOUTS: dict[str, str | None] = {
    "auto": None,
    "cls": "cls",
    "classification": "cls",
    "seg": "seg",
    "segmentation": "seg",
}


def detect_layout(root: Path, images_dir: str = "images", masks_dir: str = "masks") -> str:
    """``"seg"`` when ``root`` holds ``images/`` and ``masks/``, ``"cls"`` when it holds class
    subfolders with images."""
    if not root.exists():
        raise DataError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"dataset path is not a folder: {root}")
    if (root / images_dir).is_dir() and (root / masks_dir).is_dir():
        return "seg"
    class_folders = [
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and list_images(p)
    ]
    if (root / images_dir).is_dir() and len(class_folders) <= 1:
        raise DataError(
            f"mask folder not found: {root / masks_dir} (segmentation layout: {images_dir}/ + {masks_dir}/ + classes.yaml)"
        )
    if class_folders:
        return "cls"
    raise DataError(
        f"cannot tell the layout of {root}: expected class folders (<class>/*.png) or images/ + masks/ + classes.yaml"
    )


def _split_summary(dataset: Dataset, split: str) -> dict[str, Any]:
    s = getattr(dataset, split)
    if dataset.task == "classification":
        counts = np.bincount(s.labels, minlength=dataset.num_classes)
        return {
            "images": len(s),
            "images_per_class": dict(zip(dataset.class_names, counts.tolist())),
        }
    present = np.stack(
        [(s.masks == k).any(axis=(1, 2)) for k in range(dataset.num_classes)], axis=1
    )
    pixels = np.bincount(s.masks.ravel(), minlength=dataset.num_classes)
    return {
        "images": len(s),
        "images_per_class": dict(zip(dataset.class_names, present.sum(axis=0).tolist())),
        "pixel_share": dict(
            zip(dataset.class_names, np.round(pixels / max(int(pixels.sum()), 1), 4).tolist())
        ),
    }


def check_path(path: str | Path, layout: Layout = "auto", **options: Any) -> dict[str, Any]:
    """Validate the dataset at ``path`` and return its summary.

    ``layout``: ``"classification"``/``"cls"`` (class-per-folder), ``"segmentation"``/``"seg"``
    (images/ + masks/) or ``"auto"``.
    Extra keyword ``options`` go to the loader's options model (e.g. ``split_file``,
    ``class_map``, ``test_fraction``). Raises :class:`DataError` on the first problem.
    """
    root = Path(path).expanduser()
    if layout not in _LAYOUTS:
        raise ConfigError(f"unknown layout '{layout}' (use auto, classification or segmentation)")
    kind = _LAYOUTS[layout] or detect_layout(
        root, options.get("images_dir", "images"), options.get("masks_dir", "masks")
    )
    model = FolderClsOptions if kind == "cls" else FolderSegOptions
    try:
        opts = model(root=root, **options)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            f"invalid option for {kind} layout: {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None
    dataset = load_folder_cls(opts) if kind == "cls" else load_folder_seg(opts)  # type: ignore[arg-type]
    return {
        "path": str(root),
        "layout": dataset.meta["layout"],
        "task": dataset.task,
        "classes": list(dataset.class_names),
        "images": len(dataset.train) + len(dataset.test),
        "original_sizes": dataset.meta["original_sizes"],
        "split": dataset.meta["split"],
        "train": _split_summary(dataset, "train"),
        "test": _split_summary(dataset, "test"),
        **({"mask_format": dataset.meta["mask_format"]} if dataset.task == "segmentation" else {}),
    }


def check_dataset(kind: str, path: str | Path, **options: Any) -> dict[str, Any]:
    """Validate ``path`` with the loader of dataset ``kind`` (a native layout such as
    ``endoscapes``, or any registered kind taking a ``root``) and summarise it per class and split."""
    from saadi_core.registry import get_registry

    entry = get_registry().get("dataset", kind)
    root = Path(path).expanduser()
    dataset = entry.load()(entry.build_options({"root": str(root), **options}))
    return {
        "path": str(root),
        "dataset": kind,
        "layout": dataset.meta.get("layout", kind),
        "task": dataset.task,
        "classes": list(dataset.class_names),
        "images": len(dataset.train) + len(dataset.test),
        "original_sizes": dataset.meta.get("original_sizes"),
        "split": dataset.meta.get("split"),
        "train": _split_summary(dataset, "train"),
        "test": _split_summary(dataset, "test"),
        **{
            k: dataset.meta[k]
            for k in ("frames_without_labels", "frames_per_official_split", "cache")
            if k in dataset.meta
        },
    }
