"""Conditions of the ``ssi`` generator: training masks with their real images, optionally augmented.

A condition is one training mask (``Condition.mask``, ``int64 (H, W)``) together with the real
image it was drawn from (``Condition.control``, ``float32 (3, H, W)`` in ``[-1, 1]``): that image
is the *known* image an inpainting model needs — SSI keeps its background tissue and regenerates
every labelled region (see :mod:`saadi_ssi.generator`). Augmented copies transform mask and image
together (nearest-neighbour for the mask, bilinear for the image, reflection at the borders), so
the known background still matches the transformed mask. Everything is a function of the options'
seed and the image ids: the same dataset always gives the same conditions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from saadi_core.diffusion.sampling import sample_seed
from saadi_core.errors import DataError
from saadi_core.interfaces import Condition
from saadi_ssi.options import SSIOptions

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.dataset import Dataset


def require_segmentation(dataset: Dataset) -> None:
    """Clear errors for datasets SSI cannot use (checked before any training)."""
    masks = dataset.require_training_masks(
        "generator 'ssi' inpaints regions of segmentation masks",
        " (use a class-prompted generator such as ssd)",
    )
    if not (masks > 0).any():
        raise DataError(
            f"dataset '{dataset.name}': the training masks contain background only; nothing to inpaint"
        )


def select_indices(n_total: int, n_conditions: int | None, seed: int) -> list[int]:
    """A seeded subset of ``n_conditions`` training images (all of them when ``None``), in order."""
    if n_conditions is None or n_conditions >= n_total:
        return list(range(n_total))
    rng = np.random.default_rng(sample_seed(seed, "ssi-conditions", n_total))
    return sorted(int(i) for i in rng.choice(n_total, size=n_conditions, replace=False))


def draw_augmentation(options: SSIOptions, source: str, copy: int) -> dict[str, Any]:
    """The transform of augmented copy ``copy`` of mask ``source`` (JSON-serialisable, stored in
    the condition's meta): flips, and for 'affine' a rotation (degrees), zoom and shift."""
    rng = np.random.default_rng(sample_seed(options.seed, f"ssi-augment:{source}", copy))
    params: dict[str, Any] = {
        "flip_x": bool(rng.random() < 0.5),
        "flip_y": bool(rng.random() < 0.5),
    }
    if options.condition_augment == "affine":
        params.update(
            angle=float(rng.uniform(-options.affine_degrees, options.affine_degrees)),
            zoom=float(rng.uniform(1.0 - options.affine_scale, 1.0 + options.affine_scale)),
            shift_x=float(rng.uniform(-options.affine_translate, options.affine_translate)),
            shift_y=float(rng.uniform(-options.affine_translate, options.affine_translate)),
        )
    return params


def apply_augmentation(
    image: torch.Tensor, mask: torch.Tensor, params: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transform ``image`` ``(3, H, W)`` and ``mask`` ``(H, W)`` identically."""
    dims = [d for d, key in ((-1, "flip_x"), (-2, "flip_y")) if params.get(key)]
    if dims:
        image, mask = image.flip(dims), mask.flip(dims)
    if "angle" not in params:
        return image.contiguous(), mask.contiguous()
    angle = math.radians(params["angle"])
    zoom = params["zoom"]
    # grid_sample's theta maps output to input coordinates in [-1, 1]: rotate, zoom in by `zoom`, shift
    theta = torch.tensor(
        [
            [math.cos(angle) / zoom, -math.sin(angle) / zoom, -2.0 * params["shift_x"]],
            [math.sin(angle) / zoom, math.cos(angle) / zoom, -2.0 * params["shift_y"]],
        ],
        dtype=torch.float32,
    )[None]
    grid = F.affine_grid(theta, [1, 1, *mask.shape], align_corners=False)
    warped = F.grid_sample(
        image[None].float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )[0]
    labels = F.grid_sample(
        mask[None, None].float(),
        grid,
        mode="nearest",
        padding_mode="reflection",
        align_corners=False,
    )
    return warped.clamp(-1.0, 1.0).contiguous(), labels[0, 0].round().long().contiguous()


def build_conditions(dataset: Dataset, options: SSIOptions) -> list[Condition]:
    """The conditions of a pool: ``n_conditions`` training masks (seeded subset), each followed by
    ``augment_copies`` augmented copies when ``condition_augment`` is not 'none'.

    Ids: ``mask:{split_id}`` for a mask as it is, ``mask:{split_id}#aug{j}`` for copy ``j``.
    """
    require_segmentation(dataset)
    split = dataset.train
    assert split.masks is not None
    copies = options.augment_copies if options.condition_augment != "none" else 0
    conditions = []
    for index in select_indices(len(split), options.n_conditions, options.seed):
        source = split.ids[index]
        image = split.image_tensor([index])[0]
        mask = torch.from_numpy(np.ascontiguousarray(split.masks[index])).long()
        conditions.append(
            Condition(id=f"mask:{source}", mask=mask, control=image, meta={"source": source})
        )
        for copy in range(1, copies + 1):
            params = draw_augmentation(options, source, copy)
            aug_image, aug_mask = apply_augmentation(image, mask, params)
            conditions.append(
                Condition(
                    id=f"mask:{source}#aug{copy}",
                    mask=aug_mask,
                    control=aug_image,
                    meta={"source": source, "augment": params},
                )
            )
    return conditions
