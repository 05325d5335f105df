"""Options of the selector kinds (light: pydantic only, no torch).

Every default is the ``tiny`` profile: random initialisation, CPU-sized training on the embedded
64-px toy data. The ``paper`` profile overrides live next to the registrations in ``plugin.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ClassWeighting = Literal["inverse", "sqrt-inverse", "none"]


class TrainOptions(BaseModel):
    """What every selector's training loop shares."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=8, ge=1, description="passes over the training data")
    batch_size: int = Field(default=32, ge=2, description="training batch size per process")
    lr: float = Field(
        default=2e-3, gt=0, description="peak AdamW learning rate (linear warm-up, cosine decay)"
    )
    weight_decay: float = Field(default=0.05, ge=0, description="AdamW weight decay")
    warmup_fraction: float = Field(
        default=0.05, ge=0, lt=1, description="share of steps spent warming the learning rate up"
    )
    seed: int = Field(default=0, description="seed of initialisation, shuffling and augmentation")
    augment: bool = Field(
        default=True,
        description="random flips, 90° rotations (square images) and a small affine warp",
    )
    affine_degrees: float = Field(
        default=10.0, ge=0, description="max rotation of the small affine warp"
    )
    affine_translate: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description="max shift of the affine warp, as a share of the size",
    )
    affine_scale: float = Field(
        default=0.1, ge=0, lt=1, description="max relative zoom in/out of the affine warp"
    )
    color_jitter: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="strength of brightness/contrast/saturation jitter; off by default because real "
        "classes may differ partly by colour",
    )
    class_weighting: ClassWeighting = Field(
        default="inverse",
        description="cross-entropy class weights from the training labels: inverse frequency, its square root, or none",
    )
    pretrained_path: Path | None = Field(
        default=None,
        description="local weights file (state dict / timm or smp checkpoint) or a saved selector directory; never downloaded",
    )
    eval_batch_size: int = Field(default=128, ge=1, description="batch size of predict/score")
    mixed_precision: Literal["auto", "no", "bf16"] = Field(
        default="auto",
        description="forward precision of training: 'auto' = bf16 on a CUDA device that supports it, else fp32; "
        "weights stay fp32. A run launched with `accelerate launch` uses the launcher's setting instead",
    )


class ClassifierOptions(TrainOptions):
    """timm image classifiers (``resnet18``, ``resnet50``, ``convnext_small``)."""

    epochs: int = Field(
        default=30,
        ge=1,
        description="passes over the training data. tiny: 30 - on toy-cls (500 images, from scratch) 10/15/20/30 "
        "epochs gave 72/78/85/98 % real test accuracy and Cohen's kappa 0.36/0.38/0.42/0.50 with the oracle on "
        "generated samples (docs/benchmarks.md): a selector that cannot classify real images cannot rank samples",
    )
    lr: float = Field(
        default=3e-3, gt=0, description="peak AdamW learning rate (linear warm-up, cosine decay)"
    )
    drop_rate: float = Field(
        default=0.0, ge=0, lt=1, description="dropout before the classifier head"
    )


class ViTOptions(ClassifierOptions):
    """``vit_small``: timm ``vit_small_patch16_224`` rebuilt for the dataset's image size.

    At 64 px the 16-px patches of the 224-px model leave a 4×4 token grid; ``patch_size`` 8 gives
    8×8 tokens (at 4× the compute). Pretrained weights with another patch or image size are
    resampled by timm's checkpoint filter.
    """

    patch_size: int = Field(
        default=8,
        ge=2,
        description="ViT patch size in pixels (the image size must be divisible by it)",
    )
    lr: float = Field(
        default=5e-4, gt=0, description="peak AdamW learning rate (ViTs need a lower one than CNNs)"
    )


class SegmenterOptions(TrainOptions):
    """segmentation_models_pytorch segmenters (``deeplabv3``, ``deeplabv3plus``, ``upernet``, ``unet``)."""

    batch_size: int = Field(default=16, ge=2, description="training batch size per process")
    encoder: str = Field(
        default="resnet18",
        description="smp encoder name (built without weights; see pretrained_path)",
    )
    dice_weight: float = Field(
        default=1.0,
        ge=0,
        description="weight of the soft Dice loss added to the weighted cross-entropy",
    )
    class_weighting: ClassWeighting = Field(
        default="sqrt-inverse",
        description="pixel cross-entropy class weights from the training masks' pixel counts",
    )
    score_include_background: bool = Field(
        default=False,
        description="count the background class in a sample's score (it is used anyway when a mask has no foreground)",
    )
    score_by: Literal["dice", "look", "dice-and-look"] = Field(
        default="dice",
        description="what a sample's score measures: 'dice' = the segmentation's mean Dice against the mask; 'look' = "
        "whether each region looks like its class, judged by a small window classifier trained on the real images "
        "(saadi_selectors/looks.py); 'dice-and-look' = the lower of the two. A segmenter finds a region by its shape, "
        "so a region in the wrong class's look still scores a high Dice: on toy-seg 'look' agreed with the oracle at "
        "kappa 0.26-0.42 where Dice gave 0.15-0.17 (docs/benchmarks.md)",
    )
    look_window: int = Field(
        default=13,
        ge=3,
        description="side in pixels of the look judge's windows (odd): large enough for a class's coarse structure, "
        "small enough to show little of the region's outline",
    )
    look_epochs: int = Field(
        default=8, ge=1, description="passes of the look judge over its windows"
    )

    @field_validator("look_window")
    @classmethod
    def _odd_window(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"look_window must be odd (a window centred on a pixel), got {value}")
        return value


class SegformerOptions(SegmenterOptions):
    """``segformer`` with the light Mix-Transformer ``mit_b0`` encoder by default."""

    encoder: str = Field(
        default="mit_b0",
        description="smp encoder name (built without weights; see pretrained_path)",
    )
