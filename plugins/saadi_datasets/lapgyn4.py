"""LapGyn4 v1.2 (``lapgyn4``): four class-per-folder image sets from gynaecologic laparoscopy.

Layout as published (``docs/datasets.md`` cites the sources)::

    LapGyn4_v1.2/Anatomical_Structures/{Colon,Liver,Ovary,Oviduct,Uterus}/*.jpg
    LapGyn4_v1.2/Surgical_Actions/<8 action folders>/*.jpg
    LapGyn4_v1.2/Instrument_Count/{0,1,2,3}/*.jpg
    LapGyn4_v1.2/Actions_on_Anatomy/{Suturing_Other,Suturing_Ovary,Suturing_Uterus,Suturing_Vagina}/*.jpg

``root`` may be ``LapGyn4_v1.2/``, the folder it was unpacked into, or one subset folder. The
subset is read by the core's class-per-folder loader (folder names are the class names; a
``split.csv`` in the subset folder is honoured). LapGyn4 ships no split: without a split file a
seeded split stratified by class holds out ``test_fraction`` of each class.
"""

from __future__ import annotations

from pathlib import Path

from saadi_core.data.cache import cached_load
from saadi_core.data.dataset import Dataset
from saadi_core.data.folders import load_folder_cls
from saadi_core.data.options import FolderClsOptions
from saadi_core.errors import DataError
from saadi_datasets.common import require_dir
from saadi_datasets.options import LapGyn4Options

VERSION_DIR = "LapGyn4_v1.2"


def subset_folder(root: Path, subset: str) -> Path:
    """The subset's folder under any of the roots a user may give."""
    if root.name == subset:
        return root
    for candidate in (root / subset, root / VERSION_DIR / subset):
        if candidate.is_dir():
            return candidate
    raise DataError(
        f"LapGyn4 subset folder not found: expected {root / subset} or {root / VERSION_DIR / subset}"
    )


def _load(options: LapGyn4Options, context: object | None = None) -> Dataset:
    root = require_dir(Path(options.root).expanduser(), "dataset folder")
    folder = subset_folder(root, options.subset)
    inner = FolderClsOptions(
        root=folder,
        image_size=options.image_size,
        fit=options.fit,
        test_fraction=options.test_fraction,
        seed=options.seed,
    )
    dataset = load_folder_cls(inner, context)
    dataset.name = "lapgyn4"
    dataset.meta["layout"] = f"LapGyn4 {options.subset} (class-per-folder)"
    return dataset


def load(options: LapGyn4Options, context: object | None = None) -> Dataset:
    """Dataset builder registered as ``lapgyn4`` (through the dataset cache)."""
    return cached_load("lapgyn4", options, Path(options.root), lambda: _load(options, context))
