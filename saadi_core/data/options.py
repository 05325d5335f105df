"""Options of the core's dataset kinds (``dataset: {kind: ..., options: {...}}`` in a config).

Kept free of NumPy/Pillow imports: the registry imports these models to validate a config
before anything is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToyClsOptions(_Options):
    """``toy-cls``: five organ classes, imbalanced, drawn from ``seed``."""

    version: Literal[1, 2] = Field(
        default=2,
        description="2: the organs drawn bold enough for a tiny generator to draw them (thick ring, large ovary "
        "disks, wide oviduct band); 1: the first, thinner shapes, which the tiny generators pass 15-25 % "
        "(docs/benchmarks.md)",
    )
    seed: int = Field(
        default=0, description="train and test are drawn from independent sub-seeds of this"
    )
    n_train: int = Field(
        default=500,
        ge=5,
        description="training images (class shares are kept exactly); small, as the real sets SAADi targets",
    )
    n_test: int = Field(default=400, ge=5, description="test images")
    image_size: int = Field(
        default=64, ge=32, le=1024, description="side of the square images in pixels"
    )


class ToySegOptions(_Options):
    """``toy-seg``: tissue background + gallbladder, cystic duct, cystic artery and tool masks."""

    version: Literal[1, 2, 3] = Field(
        default=3,
        description="3: each class has its colour and a coarse structure with a random phase (highlights, rings, "
        "beads, a bright half) on varied backgrounds and lighting, so a flat region fails - the tiny ssi passes it "
        "about two times in three (docs/benchmarks.md); 1: one colour range per class (every mask-conditioned "
        "generator passes its oracle); 2: fine texture, judged region by region (the tiny generators pass it 0-3 %)",
    )
    seed: int = Field(
        default=0, description="train and test are drawn from independent sub-seeds of this"
    )
    n_train: int = Field(default=600, ge=1, description="training images")
    n_test: int = Field(default=200, ge=1, description="test images")
    n_layouts: int = Field(
        default=256,
        ge=0,
        description="unseen layouts: scenes drawn like the others that nothing trains or is tested on; "
        "evaluation generates on their masks (evaluation.conditions), so copying a training image cannot pass. "
        "256 = ssi's 128 conditions for the evaluation and 128 others for the aligners' validation",
    )
    image_size: int = Field(
        default=64, ge=32, le=1024, description="side of the square images in pixels"
    )


class _FolderOptions(_Options):
    root: Path = Field(description="dataset folder")
    image_size: int = Field(
        default=64, ge=8, le=4096, description="images are resized to image_size × image_size"
    )
    fit: Literal["crop", "stretch"] = Field(
        default="crop",
        description="'crop': centre-crop to a square before resizing (keeps aspect); 'stretch': resize directly",
    )
    split_file: Path | None = Field(
        default=None,
        description="CSV (columns file,split) or JSON ({train: [...], test: [...]}); relative paths are "
        "taken from root; default: root/split.csv or root/split.json if present, else a seeded stratified split",
    )
    test_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="share of each class held out when no split file is given",
    )
    seed: int = Field(default=0, description="seed of the stratified split")


class FolderClsOptions(_FolderOptions):
    """``folder-cls``: ``root/<class>/*.png|jpg|…``, one folder per class (sorted names = class ids)."""


class FolderSegOptions(_FolderOptions):
    """``folder-seg``: ``root/images/`` + ``root/masks/`` (same file stem) and a class map YAML."""

    images_dir: str = Field(default="images", description="image folder, relative to root")
    masks_dir: str = Field(default="masks", description="mask folder, relative to root")
    class_map: Path = Field(
        default=Path("classes.yaml"),
        description="YAML relative to root: {0: background, 1: tool} (mask values) or "
        "{background: [0, 0, 0], tool: [255, 0, 0]} (mask colours); the first class is the background",
    )
