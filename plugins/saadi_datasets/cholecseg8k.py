"""CholecSeg8k (``cholecseg8k``): 8,080 frames of 17 Cholec80 videos with 13-class masks.

Layout as published (``docs/datasets.md`` cites the sources)::

    root/videoNN/videoNN_<first frame>/frame_<n>_endo.png                  854x480 RGB frame
                                       frame_<n>_endo_watershed_mask.png   class codes as grey RGB
                                       frame_<n>_endo_color_mask.png       class colours
                                       frame_<n>_endo_mask.png             annotation-tool mask (unused)

Neither mask holds class ids: the watershed mask's grey codes (50 black background, 11 abdominal
wall, 21 liver, …) and the colour mask's colours are looked up in the published tables; the
watershed mask's white (255) separating lines become background. The dataset has no official
split: ``test_videos`` names held-out videos, else a seeded ``test_fraction`` of the videos is
held out — always whole videos, since a video's frames are near duplicates.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from saadi_core.data.cache import cached_load
from saadi_core.data.dataset import Dataset
from saadi_core.data.folders import read_image, resize_labels
from saadi_core.errors import DataError
from saadi_datasets.common import (
    assemble,
    decode_mask,
    group_split,
    require_dir,
    sizes,
    track,
)
from saadi_datasets.options import CholecSeg8kOptions

#: (class name, watershed grey code, colour-mask colour), class id = position
CLASSES: list[tuple[str, int, tuple[int, int, int]]] = [
    ("black_background", 50, (127, 127, 127)),
    ("abdominal_wall", 11, (210, 140, 140)),
    ("liver", 21, (255, 114, 114)),
    ("gastrointestinal_tract", 13, (231, 70, 156)),
    ("fat", 12, (186, 183, 75)),
    ("grasper", 31, (170, 255, 0)),
    ("connective_tissue", 23, (255, 85, 0)),
    ("blood", 24, (255, 0, 0)),
    ("cystic_duct", 25, (255, 255, 0)),
    ("l_hook_electrocautery", 32, (169, 255, 184)),
    ("gallbladder", 22, (255, 160, 165)),
    ("hepatic_vein", 33, (0, 50, 128)),
    ("liver_ligament", 5, (111, 74, 0)),
]
#: the watershed lines drawn between regions
BOUNDARY_GREY, BOUNDARY_COLOUR = 255, (255, 255, 255)
_FRAME = re.compile(r"^frame_(\d+)_endo\.png$")
_VIDEO = re.compile(r"^video\d+$")


def mask_table(kind: str) -> dict:
    if kind == "watershed":
        return {grey: k for k, (_, grey, _) in enumerate(CLASSES)} | {BOUNDARY_GREY: 0}
    return {colour: k for k, (_, _, colour) in enumerate(CLASSES)} | {BOUNDARY_COLOUR: 0}


def find_frames(root: Path, mask: str) -> list[tuple[str, Path, Path]]:
    """``(video, frame, mask)`` for every frame, sorted; a frame without its mask is an error."""
    videos = sorted(p for p in root.iterdir() if p.is_dir() and _VIDEO.match(p.name))
    if not videos:
        raise DataError(
            f"no videoNN folders in {root} (CholecSeg8k layout: videoNN/videoNN_<start>/frame_<n>_endo.png)"
        )
    suffix = "_endo_watershed_mask.png" if mask == "watershed" else "_endo_color_mask.png"
    frames = []
    for video in videos:
        for clip in sorted(p for p in video.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(clip.iterdir()):
                match = _FRAME.match(f.name)
                if match is None:
                    continue
                mask_path = clip / f"frame_{match.group(1)}{suffix}"
                if not mask_path.is_file():
                    raise DataError(f"no {mask} mask for frame {f} (expected {mask_path})")
                frames.append((video.name, f, mask_path))
    if not frames:
        raise DataError(f"no frame_<n>_endo.png frames under {root}")
    return frames


def _load(options: CholecSeg8kOptions, context: object | None = None) -> Dataset:
    root = require_dir(Path(options.root).expanduser(), "dataset folder")
    frames = find_frames(root, options.mask)
    videos = [v for v, _, _ in frames]
    if options.test_videos is not None:
        unknown = sorted(set(options.test_videos) - set(videos))
        if unknown:
            raise DataError(
                f"test video {unknown[0]} is not a video folder of {root} (it has: {', '.join(sorted(set(videos)))})"
            )
        test = [i for i, v in enumerate(videos) if v in options.test_videos]
        train = [i for i, v in enumerate(videos) if v not in options.test_videos]
        how, held = "test_videos option", sorted(options.test_videos)
    else:
        train, test, held = group_split(
            videos, options.test_fraction, options.seed, f"CholecSeg8k at {root}"
        )
        how = f"by video, test_fraction={options.test_fraction} seed={options.seed}"
    table = mask_table(options.mask)
    s = options.image_size
    images = np.empty((len(frames), s, s, 3), dtype=np.uint8)
    masks = np.empty((len(frames), s, s), dtype=np.int64)
    originals = []
    name = f"the CholecSeg8k {options.mask} mask table"
    unknown_class = 0 if options.unknown_to_background else None
    for i, (_, frame, mask) in enumerate(
        track(context, frames, "load CholecSeg8k frames", len(frames))
    ):
        images[i], original = read_image(frame, s, options.fit)
        masks[i] = resize_labels(
            decode_mask(mask, table, original, options.mask == "color", name, unknown_class),
            s,
            options.fit,
        )
        originals.append(original)
    meta = {
        "layout": f"CholecSeg8k ({options.mask} masks)",
        "split": f"{how}; test videos: {', '.join(held)}",
        "original_sizes": sizes(originals),
    }
    ids = [f.relative_to(root).as_posix() for _, f, _ in frames]
    return assemble(
        "cholecseg8k", [c[0] for c in CLASSES], images, masks, ids, train, test, root, meta
    )


def load(options: CholecSeg8kOptions, context: object | None = None) -> Dataset:
    """Dataset builder registered as ``cholecseg8k`` (through the dataset cache)."""
    return cached_load("cholecseg8k", options, Path(options.root), lambda: _load(options, context))
