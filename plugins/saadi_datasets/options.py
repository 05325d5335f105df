"""Options of the native-layout datasets (imported by the registry to validate a config; no
NumPy or Pillow here)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: where an official validation split goes: saadi has a train and a test split
ValSplit = Literal["train", "test", "drop"]


class _Native(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Path = Field(description="the dataset as downloaded and unpacked")
    image_size: int = Field(
        default=64,
        ge=8,
        le=4096,
        description="images (and masks, nearest neighbour) are resized to this square size on load",
    )
    fit: Literal["crop", "stretch"] = Field(
        default="crop",
        description="'crop': centre-crop to a square before resizing (keeps aspect); 'stretch': resize directly",
    )


class _Seeded(_Native):
    test_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="share held out for testing (the dataset has no official split)",
    )
    seed: int = Field(default=0, description="seed of the held-out split")


class LapGyn4Options(_Seeded):
    """LapGyn4 v1.2: ``root`` is ``LapGyn4_v1.2/`` (or the folder holding it, or one subset folder)."""

    subset: Literal[
        "Anatomical_Structures", "Surgical_Actions", "Instrument_Count", "Actions_on_Anatomy"
    ] = Field(
        default="Anatomical_Structures",
        description="which of the four LapGyn4 problems (its class folders are the classes)",
    )


class EndoscapesOptions(_Native):
    """Endoscapes2023 segmentation subset: ``root`` holds ``train_seg/``, ``val_seg/``, ``test_seg/``."""

    val_split: ValSplit = Field(default="train", description="where the official val_seg frames go")
    classes: list[str] | None = Field(
        default=None,
        description="keep only these categories (others become background); default: all six",
    )


class AutoLaparoOptions(_Native):
    """AutoLaparo task 3: ``root`` holds ``imgs/`` and ``masks/``."""

    val_split: ValSplit = Field(
        default="train", description="where the official validation clips (171-227) go"
    )
    merge_parts: bool = Field(
        default=False,
        description="merge each tool's shaft and manipulator into one class (5 classes + background instead of 9 + background)",
    )


class CholecSeg8kOptions(_Seeded):
    """CholecSeg8k: ``root`` holds ``videoNN/`` folders."""

    mask: Literal["watershed", "color"] = Field(
        default="watershed",
        description="which of the per-frame masks to read: *_endo_watershed_mask.png or *_endo_color_mask.png",
    )
    test_videos: list[str] | None = Field(
        default=None,
        description="videos held out for testing (e.g. [video12, video20]); default: a seeded test_fraction of the videos",
    )
    unknown_to_background: bool = Field(
        default=False,
        description="map mask values outside the 13-class table (stray codes some frames carry) to background instead of stopping",
    )


class CocoOptions(_Seeded):
    """Generic COCO: an annotation JSON (instances or semantic, polygons or RLE) and its images."""

    annotations: Path = Field(
        default=Path("annotations.json"),
        description="COCO JSON relative to root (the train split, or everything)",
    )
    test_annotations: Path | None = Field(
        default=None,
        description="COCO JSON of the test split; default: a seeded test_fraction of the images in 'annotations'",
    )
    images_dir: Path = Field(
        default=Path("images"),
        description="folder the images' file_name is relative to (relative to root)",
    )
    test_images_dir: Path | None = Field(
        default=None, description="image folder of test_annotations; default: images_dir"
    )
    classes: list[str] | None = Field(
        default=None,
        description="keep only these categories (others become background); default: all",
    )
    skip_crowd: bool = Field(default=False, description="leave iscrowd=1 regions as background")
