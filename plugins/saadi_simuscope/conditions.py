"""Where simulator frames come from, and how they become conditions.

A condition of ``simuscope`` is one simulator frame with its exact label:
``Condition(id="sim:{name}", mask=label, control=frame)`` — ``mask`` ``int64 (H, W)``,
``control`` ``float32 (3, H, W)`` in ``[-1, 1]``. The generated image keeps ``mask`` as its label.

Two sources (option ``simulator_dir``):

* **a user's simulator export** — ``frames/`` and ``masks/`` with the same file stems, masks as
  single-channel / palette-index PNGs holding the dataset's class ids, or, with a
  ``classes.yaml`` next to them, any index or colour coding naming the dataset's classes (the
  format of the ``folder-seg`` dataset, read by the same functions). Frames are resized (centre
  crop) to the dataset's image size, masks with nearest neighbour. Every problem is a one-line
  :class:`~saadi_core.errors.DataError` naming the file;
* **the toy simulator** (default) — :func:`saadi_simuscope.simulator.render` of the dataset's
  *training* masks, named ``sim:{training image id}``. The pool thus asks for realistic versions
  of training layouts (as SSI's conditions do); ``flip_copies`` adds flipped layouts.

``n_conditions`` picks a seeded subset; everything is a function of the options and the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from saadi_core.data.folders import ClassMap, list_images, read_class_map, read_image, read_mask
from saadi_core.diffusion.sampling import sample_seed
from saadi_core.errors import DataError
from saadi_core.interfaces import Condition
from saadi_simuscope.options import SimuScopeOptions
from saadi_simuscope.simulator import render

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.dataset import Dataset

FRAMES_DIR = "frames"
MASKS_DIR = "masks"
CLASS_MAP = "classes.yaml"
#: flipped copies in order: (flip_x, flip_y) of copy 1, 2, 3
FLIPS = ((True, False), (False, True), (True, True))


@dataclass
class SimulatorFrames:
    """Simulator frames ``uint8 (N, S, S, 3)``, their labels ``int64 (N, S, S)`` (dataset class
    ids) and a name per frame."""

    frames: np.ndarray
    labels: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def require_segmentation(dataset: Dataset) -> None:
    """Clear errors for datasets SimuScope cannot use (checked before any training)."""
    dataset.require_training_masks(
        "generator 'simuscope' turns labelled simulator frames into realistic ones"
    )


def _class_map(root: Path, dataset: Dataset) -> tuple[ClassMap, np.ndarray]:
    """The simulator's class map and, per class of that map, the dataset's class id."""
    path = root / CLASS_MAP
    if not path.is_file():  # masks hold the dataset's class ids directly
        ids = np.arange(dataset.num_classes)
        names = list(dataset.class_names)
        return ClassMap(
            path=Path(f"{dataset.name} class ids 0-{dataset.num_classes - 1}"),
            names=names,
            form="index",
            values=list(ids),
        ), ids
    class_map = read_class_map(path)
    unknown = [n for n in class_map.names if n not in dataset.class_names]
    if unknown:
        raise DataError(
            f"{path}: class '{unknown[0]}' is not a class of dataset '{dataset.name}' ({', '.join(dataset.class_names)})"
        )
    return class_map, np.array(
        [dataset.class_names.index(n) for n in class_map.names], dtype=np.int64
    )


def read_simulator_dir(root: Path, dataset: Dataset) -> SimulatorFrames:
    """Load and validate a simulator export (see the module docstring)."""
    root = Path(root).expanduser()
    frame_dir, mask_dir = root / FRAMES_DIR, root / MASKS_DIR
    for folder in (root, frame_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(
                f"simulator folder not found: {folder} (option 'simulator_dir' needs {FRAMES_DIR}/ and {MASKS_DIR}/)"
            )
    frame_files = list_images(frame_dir)
    if not frame_files:
        raise DataError(f"no simulator frames in {frame_dir}")
    masks_by_stem: dict[str, Path] = {}
    for path in list_images(mask_dir):
        if path.stem in masks_by_stem:
            raise DataError(
                f"{masks_by_stem[path.stem]} and {path} share the stem '{path.stem}'; masks are matched to frames by stem"
            )
        masks_by_stem[path.stem] = path
    class_map, to_dataset = _class_map(root, dataset)
    size = dataset.image_size
    frames = np.empty((len(frame_files), size, size, 3), dtype=np.uint8)
    labels = np.empty((len(frame_files), size, size), dtype=np.int64)
    for i, path in enumerate(frame_files):
        mask_path = masks_by_stem.get(path.stem)
        if mask_path is None:
            raise DataError(
                f"no label mask for simulator frame {path} (expected {mask_dir / path.stem}.png)"
            )
        frames[i], original = read_image(path, size, "crop")
        labels[i] = to_dataset[read_mask(mask_path, class_map, original, size, "crop")]
    return SimulatorFrames(frames=frames, labels=labels, names=[p.stem for p in frame_files])


def simulator_frames(dataset: Dataset, options: SimuScopeOptions) -> SimulatorFrames:
    """The simulator frames of a run: the user's export, or toy renders of the training masks."""
    require_segmentation(dataset)
    if options.simulator_dir is not None:
        return read_simulator_dir(options.simulator_dir, dataset)
    masks = np.asarray(dataset.train.masks)
    return SimulatorFrames(
        frames=render(masks, dataset.num_classes), labels=masks, names=list(dataset.train.ids)
    )


def select_indices(n_total: int, n_conditions: int | None, seed: int) -> list[int]:
    """A seeded subset of ``n_conditions`` frames (all of them when ``None``), in order."""
    if n_conditions is None or n_conditions >= n_total:
        return list(range(n_total))
    rng = np.random.default_rng(sample_seed(seed, "simuscope-conditions", n_total))
    return sorted(int(i) for i in rng.choice(n_total, size=n_conditions, replace=False))


def build_conditions(dataset: Dataset, options: SimuScopeOptions) -> list[Condition]:
    """The conditions of a pool: ``n_conditions`` simulator frames, each followed by its
    ``flip_copies`` flipped copies (``sim:{name}#flip{x|y|xy}``)."""
    source = simulator_frames(dataset, options)
    conditions = []
    for index in select_indices(len(source), options.n_conditions, options.seed):
        name = source.names[index]
        frame = (
            torch.from_numpy(np.ascontiguousarray(source.frames[index]))
            .permute(2, 0, 1)
            .float()
            .div(127.5)
            .sub(1.0)
        )
        label = torch.from_numpy(np.ascontiguousarray(source.labels[index])).long()
        conditions.append(
            Condition(id=f"sim:{name}", mask=label, control=frame, meta={"source": name})
        )
        for flip_x, flip_y in FLIPS[: options.flip_copies]:
            dims = [d for d, on in ((-1, flip_x), (-2, flip_y)) if on]
            tag = "x" * flip_x + "y" * flip_y
            conditions.append(
                Condition(
                    id=f"sim:{name}#flip{tag}",
                    mask=label.flip(dims).contiguous(),
                    control=frame.flip(dims).contiguous(),
                    meta={"source": name, "flip": tag},
                )
            )
    return conditions
