"""The dataset record every stage consumes.

Datasets are small (surgical datasets with labels are; the toy ones are ~1000 images), so a split
is held in memory as NumPy arrays: ``uint8`` images are compact and exactly what the files hold,
and NumPy keeps this module free of torch. :meth:`Split.image_tensor` converts to the toolkit's
``float32 [-1, 1]`` NCHW convention when a model needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from saadi_core.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch

Task = Literal["classification", "segmentation"]


@dataclass
class Split:
    """One split. ``images``: ``uint8 (N, H, W, 3)``; ``labels``: ``int64 (N,)`` class ids
    (classification); ``masks``: ``int64 (N, H, W)`` class ids (segmentation); ``ids``: a stable
    name per image (file path relative to the dataset root, or ``toy/00012``)."""

    images: np.ndarray
    ids: list[str]
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def image_tensor(self, index: slice | list[int] | np.ndarray | None = None) -> torch.Tensor:
        """Images as ``float32 (N, 3, H, W)`` in ``[-1, 1]``."""
        import torch

        arr = self.images if index is None else self.images[index]
        return (
            torch.from_numpy(np.ascontiguousarray(arr))
            .permute(0, 3, 1, 2)
            .float()
            .div(127.5)
            .sub(1.0)
        )

    def subset(self, index: list[int] | np.ndarray) -> Split:
        idx = np.asarray(index, dtype=np.int64)
        return Split(
            images=self.images[idx],
            ids=[self.ids[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx],
            masks=None if self.masks is None else self.masks[idx],
        )


class Oracle(Protocol):
    """Decides from pixels alone whether images show what they were asked to show.

    Only the embedded toy datasets have one (their generative rule is known); it is the honest
    check that alignment improves what images show rather than only a selector's opinion.
    ``images``: ``uint8 (N, H, W, 3)``; for classification ``labels`` (``(N,)``) are the intended
    classes, for segmentation ``masks`` (``(N, H, W)``) the intended label maps. Returns a boolean
    array ``(N,)``.
    """

    def check(
        self, images: np.ndarray, labels: np.ndarray | None = None, masks: np.ndarray | None = None
    ) -> np.ndarray: ...


@dataclass
class Dataset:
    """A named dataset with a train and a test split.

    ``class_names[i]`` names class id ``i``; for segmentation, id 0 is the background.
    ``layouts`` (optional, segmentation): scenes no model trains or is tested on. Evaluation may
    generate on their masks (``evaluation.conditions``), so that a sample cannot pass by
    reproducing the training image its condition was drawn from — which a generator that has
    memorised its few training images does, and which alignment on the real images rewards.
    ``source`` says where it came from (``"embedded:toy-cls seed=0"`` or a folder path) and goes
    into the run manifest.
    """

    name: str
    task: Task
    class_names: list[str]
    train: Split
    test: Split
    layouts: Split | None = None
    oracle: Oracle | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self, split: str = "train") -> dict[str, int]:
        """Images per class (classification) or pixels per class (segmentation)."""
        s: Split = getattr(self, split)
        values = s.labels if self.task == "classification" else s.masks
        counts = np.bincount(np.asarray(values).ravel(), minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def require_training_masks(self, user: str, hint: str = "") -> np.ndarray:
        """The training masks, or a one-line error saying why ``user`` (e.g. "generator 'ssi'
        inpaints regions of segmentation masks") cannot use this dataset: not segmentation, an
        empty train split, or class ids outside the named classes. Generators call it in ``fit``
        so bad data stops before any training."""
        masks = self.train.masks
        if self.task != "segmentation" or masks is None:
            raise ConfigError(
                f"{user} and needs a segmentation dataset; '{self.name}' is {self.task}{hint}"
            )
        if len(masks) == 0:
            raise DataError(f"dataset '{self.name}': the train split is empty")
        low, high = int(masks.min()), int(masks.max())
        if low < 0 or high >= self.num_classes:
            raise DataError(
                f"dataset '{self.name}': training masks hold class ids {low}..{high}, outside [0, {self.num_classes}) "
                "(the classes the dataset names)"
            )
        return masks
