"""Built-in plugin of the core: registers the embedded toy datasets and the folder loaders.

The registry loads this module like any plugin (see :mod:`saadi_core.registry`), so the core's own
datasets go through the same ``register`` contract as a third party's. Targets and options are
import paths: nothing here imports NumPy or Pillow, and ``saadi --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

from saadi_core import hookimpl

_OPTIONS = "saadi_core.data.options"


@hookimpl
def saadi_register_datasets(register: Any) -> None:
    register(
        "toy-cls",
        "saadi_core.data.toy_cls:build",
        options=f"{_OPTIONS}:ToyClsOptions",
        description="Embedded LapGyn-like organ classification: 5 imbalanced classes told apart by shape, 64 px, with an oracle.",
        task="classification",
    )
    register(
        "toy-seg",
        "saadi_core.data.toy_seg:build",
        options=f"{_OPTIONS}:ToySegOptions",
        description="Embedded Endoscapes-like segmentation: tissue, gallbladder, cystic duct/artery, tool; each class has its colour and a coarse structure with a random phase (version 3, default; 1: colour only; 2: fine texture), with an oracle.",
        task="segmentation",
    )
    register(
        "folder-cls",
        "saadi_core.data.cached_folders:load_folder_cls",
        options=f"{_OPTIONS}:FolderClsOptions",
        description="Your images, one folder per class (root/<class>/*.png|jpg); optional split.csv/split.json.",
        task="classification",
    )
    register(
        "folder-seg",
        "saadi_core.data.cached_folders:load_folder_seg",
        options=f"{_OPTIONS}:FolderSegOptions",
        description="Your images and masks: root/images + root/masks (index or palette PNG) + classes.yaml; optional split file.",
        task="segmentation",
    )
