"""Registration of the selector kinds (lazy: no torch, timm or smp imported here).

Classification (timm, ``score`` = probability of the intended class): ``resnet18`` (the ``tiny``
default), ``resnet50``, ``convnext_small``, ``vit_small``. Segmentation (segmentation_models_pytorch,
``score`` = mean Dice against the sample's mask): ``segformer`` (the ``tiny`` default),
``deeplabv3``, ``deeplabv3plus``, ``upernet``, ``unet``. The same kinds serve as downstream models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from saadi_core import hookimpl

_CLS_PAPER = {"epochs": 40, "lr": 3e-4, "batch_size": 32}
_SEG_PAPER = {"epochs": 60, "lr": 3e-4, "batch_size": 8}

#: kind -> (implementation, options model, description, paper profile)
SELECTORS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "resnet18": (
        "saadi_selectors.classifiers:ResNet18Selector",
        "saadi_selectors.options:ClassifierOptions",
        "timm ResNet-18 classifier (small; the tiny default)",
        _CLS_PAPER,
    ),
    "resnet50": (
        "saadi_selectors.classifiers:ResNet50Selector",
        "saadi_selectors.options:ClassifierOptions",
        "timm ResNet-50 classifier",
        _CLS_PAPER,
    ),
    "convnext_small": (
        "saadi_selectors.classifiers:ConvNeXtSmallSelector",
        "saadi_selectors.options:ClassifierOptions",
        "timm ConvNeXt-S classifier",
        _CLS_PAPER | {"lr": 2e-4},
    ),
    "vit_small": (
        "saadi_selectors.classifiers:ViTSmallSelector",
        "saadi_selectors.options:ViTOptions",
        "timm ViT-S classifier rebuilt for the dataset size (patch_size option)",
        _CLS_PAPER | {"lr": 1e-4},
    ),
    "segformer": (
        "saadi_selectors.segmenters:SegformerSelector",
        "saadi_selectors.options:SegformerOptions",
        "smp SegFormer segmenter (mit_b0 encoder; the tiny default)",
        _SEG_PAPER,
    ),
    "deeplabv3": (
        "saadi_selectors.segmenters:DeepLabV3Selector",
        "saadi_selectors.options:SegmenterOptions",
        "smp DeepLabV3 segmenter (the paper's model)",
        _SEG_PAPER,
    ),
    "deeplabv3plus": (
        "saadi_selectors.segmenters:DeepLabV3PlusSelector",
        "saadi_selectors.options:SegmenterOptions",
        "smp DeepLabV3+ segmenter (sharper boundaries on small images)",
        _SEG_PAPER,
    ),
    "upernet": (
        "saadi_selectors.segmenters:UPerNetSelector",
        "saadi_selectors.options:SegmenterOptions",
        "smp UPerNet segmenter",
        _SEG_PAPER,
    ),
    "unet": (
        "saadi_selectors.segmenters:UnetSelector",
        "saadi_selectors.options:SegmenterOptions",
        "smp U-Net segmenter",
        _SEG_PAPER,
    ),
}


@hookimpl
def saadi_register_selectors(register: Callable[..., None]) -> None:
    for kind, (target, options, description, paper) in SELECTORS.items():
        task = "segmentation" if paper is _SEG_PAPER else "classification"
        register(
            kind,
            target,
            options=options,
            description=description,
            profiles={"paper": dict(paper)},
            task=task,
        )
    register(
        "ensemble",
        "saadi_selectors.ensemble:EnsembleSelector",
        options="saadi_selectors.ensemble:EnsembleOptions",
        description="several selector architectures that must agree: score = the lowest member score (a winner needs "
        "every member's score >= h); guards pairing and filtering against one network's blind spots",
    )
