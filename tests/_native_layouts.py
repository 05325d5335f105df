"""Small folders in the native layouts of the public datasets (``saadi_datasets``), built from
the embedded toy scenes so that a run on them has something to learn.

Each builder mirrors its dataset's published layout — folder and file names, mask encodings,
annotation formats — including the quirks a loader must handle (see docs/datasets.md): mask
values that are not class ids, frames listed without any label, RLE (compressed and not) next to
polygons, frames on disk that no annotation lists, watershed boundary lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: Endoscapes2023 categories as the release lists them
ENDOSCAPES_CATEGORIES = [
    "cystic_plate",
    "calot_triangle",
    "cystic_artery",
    "cystic_duct",
    "gallbladder",
    "tool",
]
#: toy-seg class id -> Endoscapes category id
_TOY_TO_ENDOSCAPES = {1: 5, 2: 4, 3: 3, 4: 6}


def toy_scenes(n: int, size: tuple[int, int], seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` toy-seg images and label maps (background, gallbladder, cystic duct, cystic artery,
    tool) stretched to ``size`` = (width, height)."""
    from saadi_core.data.toy_seg import make_toy_seg

    data = make_toy_seg(seed=seed, n_train=n, n_test=1, image_size=64)
    images = np.stack(
        [
            np.asarray(Image.fromarray(im).resize(size, Image.Resampling.BILINEAR))
            for im in data.train.images
        ]
    )
    masks = np.stack(
        [
            np.asarray(Image.fromarray(m.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))
            for m in data.train.masks
        ]
    )
    return images, masks


def _rle(binary: np.ndarray, compressed: bool) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    if compressed:
        return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    # uncompressed RLE: run lengths in column-major order, starting with a run of zeros
    flat = binary.astype(np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(binary.shape), "counts": counts}


def coco_document(
    masks: np.ndarray,
    names: list[str],
    categories: list[str],
    toy_to_category: dict[int, int],
    unlabelled: set[int],
) -> tuple[dict, np.ndarray]:
    """A COCO dict for frames ``names`` with the toy label maps as instances, and the label maps
    the loader must reproduce (class id = position in ``categories`` + 1).

    Quirks: frames in ``unlabelled`` are listed without annotations; instances alternate between
    compressed and uncompressed RLE (iscrowd 0, as Endoscapes stores them); every third frame
    gets a rectangle polygon of the first category on top of its scene."""
    h, w = masks.shape[1:]
    doc = {
        "images": [],
        "annotations": [],
        "categories": [
            {"id": k + 1, "name": n, "supercategory": "x"} for k, n in enumerate(categories)
        ],
    }
    expected = np.zeros_like(masks)
    ann_id = 1
    for i, (name, mask) in enumerate(zip(names, masks)):
        doc["images"].append({"id": i + 1, "file_name": name, "width": w, "height": h})
        if i in unlabelled:
            continue
        for toy, cat in toy_to_category.items():
            binary = mask == toy
            if not binary.any():
                continue
            doc["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": i + 1,
                    "category_id": cat,
                    "iscrowd": 0,
                    "area": int(binary.sum()),
                    "bbox": [0, 0, w, h],
                    "segmentation": _rle(binary, compressed=ann_id % 2 == 0),
                }
            )
            ann_id += 1
        expected[i] = np.where(
            mask > 0, np.vectorize(lambda t: toy_to_category.get(int(t), 0))(mask), 0
        )
        if i % 3 == 0:  # a small polygon region painted last (smallest) over whatever lies there
            x0, y0, x1, y1 = 1, 1, max(3, w // 6), max(3, h // 6)
            doc["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": i + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "area": (x1 - x0) * (y1 - y0),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                }
            )
            ann_id += 1
            from pycocotools import mask as mask_utils

            poly = (
                mask_utils.decode(mask_utils.frPyObjects([[x0, y0, x1, y0, x1, y1, x0, y1]], h, w))
                .squeeze(-1)
                .astype(bool)
            )
            expected[i][poly] = 1
    return doc, expected


def make_endoscapes(
    root: Path, n: dict[str, int] | None = None, size: tuple[int, int] = (96, 54), seed: int = 3
) -> dict[str, np.ndarray]:
    """``root/{train,val,test}_seg/`` with ``<video>_<frame>.jpg`` and ``annotation_coco.json``;
    returns the expected native-size label maps per split (class id = category id)."""
    n = n or {"train": 6, "val": 2, "test": 3}
    images, masks = toy_scenes(sum(n.values()), size, seed)
    expected: dict[str, np.ndarray] = {}
    start = 0
    for k, (split, count) in enumerate(n.items()):
        folder = root / f"{split}_seg"
        folder.mkdir(parents=True)
        video = 10 * (k + 1)
        names = [f"{video + i // 3}_{(i % 3 + 1) * 25}.jpg" for i in range(count)]
        for name, image in zip(names, images[start : start + count]):
            Image.fromarray(image).save(folder / name, quality=95)
        Image.fromarray(images[start]).save(folder / f"{video}_9999.jpg")  # on disk, not annotated
        doc, expected[split] = coco_document(
            masks[start : start + count],
            names,
            ENDOSCAPES_CATEGORIES,
            _TOY_TO_ENDOSCAPES,
            unlabelled={1} if split == "train" else set(),
        )
        (folder / "annotation_coco.json").write_text(json.dumps(doc))
        start += count
    return expected


def make_coco(root: Path, n: int = 8, size: tuple[int, int] = (40, 30)) -> np.ndarray:
    """``root/images/*.png`` + ``root/annotations.json`` with the toy classes as categories."""
    images, masks = toy_scenes(n, size, seed=5)
    (root / "images").mkdir(parents=True)
    names = [f"case{i:02d}.png" for i in range(n)]
    for name, image in zip(names, images):
        Image.fromarray(image).save(root / "images" / name)
    cats = ["gallbladder", "cystic_duct", "cystic_artery", "tool"]
    doc, expected = coco_document(masks, names, cats, {1: 1, 2: 2, 3: 3, 4: 4}, unlabelled=set())
    (root / "annotations.json").write_text(json.dumps(doc))
    return expected


#: AutoLaparo task 3 grey value of each toy class (gallbladder -> uterus, duct -> LigaSure shaft, …)
AUTOLAPARO_VALUES = {0: 0, 1: 180, 2: 80, 3: 40, 4: 60}


def make_autolaparo(
    root: Path, clips: dict[int, int] | None = None, size: tuple[int, int] = (96, 54)
) -> None:
    """``root/imgs/<clip><frame>.jpg`` + ``root/masks/<clip><frame>.png`` (grey values as RGB)."""
    clips = clips or {1: 3, 2: 3, 171: 2, 228: 2, 300: 2}
    images, masks = toy_scenes(sum(clips.values()), size, seed=7)
    (root / "imgs").mkdir(parents=True)
    (root / "masks").mkdir()
    i = 0
    for clip, count in clips.items():
        for f in range(count):
            stem = f"{clip:03d}{(f + 1) * 25:03d}"
            Image.fromarray(images[i]).save(root / "imgs" / f"{stem}.jpg", quality=95)
            grey = np.vectorize(AUTOLAPARO_VALUES.get)(masks[i]).astype(np.uint8)
            Image.fromarray(np.stack([grey] * 3, axis=-1)).save(root / "masks" / f"{stem}.png")
            i += 1


#: toy class -> CholecSeg8k class id (gallbladder 10, cystic duct 8, blood 7, grasper 5; background -> fat 4)
CHOLEC_IDS = {0: 4, 1: 10, 2: 8, 3: 7, 4: 5}


def make_cholecseg8k(
    root: Path, videos: dict[str, int] | None = None, size: tuple[int, int] = (85, 48)
) -> np.ndarray:
    """``root/videoNN/videoNN_<start>/frame_<n>_endo*.png`` (watershed, colour and annotation
    masks); returns the expected native-size class ids in frame order."""
    from saadi_datasets.cholecseg8k import CLASSES

    videos = videos or {"video01": 3, "video09": 2, "video12": 2, "video17": 2}
    images, masks = toy_scenes(sum(videos.values()), size, seed=9)
    expected = np.vectorize(CHOLEC_IDS.get)(masks)
    expected[:, :2, :] = 0  # a black-background band at the top, as outside the endoscope's view
    i = 0
    for video, count in videos.items():
        clip = root / video / f"{video}_{80 * (i + 1):05d}"
        clip.mkdir(parents=True)
        for f in range(count):
            frame = 80 * (i + 1) + f
            Image.fromarray(images[i]).save(clip / f"frame_{frame}_endo.png")
            grey = np.array([c[1] for c in CLASSES], dtype=np.uint8)[expected[i]]
            grey[-1, :] = 255  # a watershed line: background
            Image.fromarray(np.stack([grey] * 3, axis=-1)).save(
                clip / f"frame_{frame}_endo_watershed_mask.png"
            )
            colour = np.array([c[2] for c in CLASSES], dtype=np.uint8)[expected[i]]
            colour[-1, :] = 255
            Image.fromarray(colour).save(clip / f"frame_{frame}_endo_color_mask.png")
            Image.fromarray(np.zeros(grey.shape, np.uint8)).save(
                clip / f"frame_{frame}_endo_mask.png"
            )
            i += 1
    expected[:, -1, :] = 0
    return expected


LAPGYN4_CLASSES = ["Colon", "Liver", "Ovary", "Oviduct", "Uterus"]


def make_lapgyn4(root: Path, per_class: int = 4, size: tuple[int, int] = (64, 48)) -> Path:
    """``root/LapGyn4_v1.2/Anatomical_Structures/<Class>/*.jpg`` from toy-cls organs (and a
    two-class Instrument_Count subset, to show subsets are kept apart)."""
    from saadi_core.data.toy_cls import make_toy_cls

    data = make_toy_cls(seed=1, n_train=40 * per_class, n_test=5, image_size=64)
    base = root / "LapGyn4_v1.2"
    for k, name in enumerate(LAPGYN4_CLASSES):
        folder = base / "Anatomical_Structures" / name
        folder.mkdir(parents=True)
        picks = np.flatnonzero(data.train.labels == k)[:per_class]
        for j, idx in enumerate(picks):
            Image.fromarray(data.train.images[idx]).resize(size).save(
                folder / f"c_{k}_v_{j}_f_{j * 25}.jpg", quality=95
            )
    for count in ("0", "1"):
        (base / "Instrument_Count" / count).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(data.train.images[j]).save(
                base / "Instrument_Count" / count / f"{j}.jpg"
            )
    return base
