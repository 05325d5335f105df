"""Loaders for datasets a user brings as folders.

Two layouts:

* **class-per-folder** (``folder-cls``): ``root/<class>/*.png|jpg|…``; sorted folder names are
  the class ids.
* **images + masks** (``folder-seg``): ``root/images/`` and ``root/masks/`` with the same file
  stem, and a class map ``root/classes.yaml`` in one of two forms —
  ``{0: background, 1: tool}`` (mask pixel *values*, for single-channel or palette-index PNGs) or
  ``{background: [0, 0, 0], tool: [255, 0, 0]}`` (mask *colours*, for RGB or palette PNGs).
  Class ids follow the sorted values (index form) or the file order (colour form); the first
  class is the background.

A split comes from ``split.csv`` (columns ``file,split``) or ``split.json``
(``{"train": [...], "test": [...]}``) in the root, or a ``split_file`` option; without one, a
seeded split stratified by class (by the rarest class present, for masks) holds out
``test_fraction`` of each class. Split entries name images by their path relative to the root
(``liver/img01.png``, ``images/case1.png``) or relative to the image folder, with or without the
extension.

Everything is validated while loading, before any training: every problem is a
:class:`~saadi_core.errors.DataError` whose one-line message names the offending file.
Images are converted to RGB and resized to ``image_size`` (masks with nearest neighbour, so class
ids survive); 16-bit greyscale is scaled by its bit depth and float images from ``[0, 1]``, other
ranges are refused (see ``docs/datasets.md``).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from saadi_core.data.dataset import Dataset, Split
from saadi_core.data.options import FolderClsOptions, FolderSegOptions
from saadi_core.errors import DataError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SPLIT_FILES: tuple[str, ...] = ("split.csv", "split.json")
SPLITS: tuple[str, ...] = ("train", "test")


# --------------------------------------------------------------------------- files


def _require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if not path.is_dir():
        raise DataError(f"{what} is not a folder: {path}")
    return path


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted; hidden files skipped)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def open_image(path: Path, what: str) -> Image.Image:
    """Open and decode ``path``; an unreadable file is a one-line DataError naming it."""
    try:
        image = Image.open(path)
        image.load()
    except (
        OSError,
        ValueError,
        SyntaxError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
    ) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {what} {path}: {reason}") from None
    return image


def square_crop(image: Image.Image, fit: str) -> Image.Image:
    """The centred square of ``image`` (``fit="crop"``) or the image itself (``"stretch"``)."""
    if fit == "stretch":
        return image
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


#: Pillow modes of one channel wider than 8 bits: ``convert("RGB")`` clips them (a 16-bit PNG
#: became all 255, a float TIFF all 0), so they are scaled here instead
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _to_8bit(image: Image.Image, path: Path) -> Image.Image:
    """A 16-bit, 32-bit integer or float greyscale image as 8-bit ``L``: integers by their bit
    depth (``value × 255 / 65535``), floats from ``[0, 1]``; anything else is refused, since no
    scale can be guessed without distorting the data."""
    values = np.asarray(image)
    if image.mode == "F":
        finite = np.isfinite(values)
        low, high = (
            (float(values[finite].min()), float(values[finite].max()))
            if finite.any()
            else (0.0, 0.0)
        )
        if not finite.all() or low < 0.0 or high > 1.0:
            raise DataError(
                f"cannot read image {path}: float pixels must lie in [0, 1], found {low:.4g}..{high:.4g}"
                + ("" if finite.all() else " and NaN/inf")
                + "; save it as 8- or 16-bit"
            )
        scaled = values * 255.0
    else:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise DataError(
                f"cannot read image {path}: {image.mode} pixels {low}..{high} are not 16-bit; save it as 8- or 16-bit"
            )
        scaled = values.astype(np.float64) * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def read_image(path: Path, image_size: int, fit: str) -> tuple[np.ndarray, tuple[int, int]]:
    """``uint8 (S, S, 3)`` RGB image and the original ``(width, height)``."""
    image = open_image(path, "image")
    original = image.size
    if image.mode in _WIDE_MODES:
        image = _to_8bit(image, path)
    if image.mode != "RGB":
        image = (
            image.convert("RGBA").convert("RGB")
            if "transparency" in image.info
            else image.convert("RGB")
        )
    image = square_crop(image, fit).resize((image_size, image_size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8), original


# --------------------------------------------------------------------------- class map


@dataclass(frozen=True)
class ClassMap:
    """Class names and how mask pixels encode them (``form`` ``"index"``: ``values`` are pixel
    values; ``"colour"``: ``values`` are RGB triples)."""

    path: Path
    names: list[str]
    form: str
    values: list[Any]

    def lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted pixel codes and the class id of each (colours packed as ``r << 16 | g << 8 | b``)."""
        codes = (
            [(r << 16) | (g << 8) | b for r, g, b in self.values]
            if self.form == "colour"
            else list(self.values)
        )
        order = np.argsort(codes, kind="stable")
        return np.asarray(codes, dtype=np.int64)[order], order.astype(np.int64)


def _is_colour(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    )


#: the layouts ``classes.yaml`` may take (said in every error about it)
CLASS_MAP_FORMS = (
    "{0: background, 1: tool} (mask values), {background: [0, 0, 0], tool: [255, 0, 0]} (mask colours) "
    "or [background, tool] (values 0, 1, ...), optionally under a top-level 'classes:' key; see docs/datasets.md"
)


def _entry_lines(node: yaml.Node | None) -> dict[Any, int]:
    """Line of each key of a YAML mapping (or item of a list), for errors about one class."""
    if isinstance(node, yaml.MappingNode):
        return {
            yaml.safe_load(k.value) if isinstance(k, yaml.ScalarNode) else None: k.start_mark.line
            + 1
            for k, _ in node.value
        }
    if isinstance(node, yaml.SequenceNode):
        return {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
    return {}


def read_class_map(path: Path) -> ClassMap:
    """Parse ``classes.yaml`` (index form, colour form, or a plain list of names = values 0…K-1),
    optionally nested under a top-level ``classes:`` key. Errors name the file, the line where
    one is known, and the accepted forms."""
    from saadi_core.config import compose_yaml, read_yaml_text

    if not path.exists():
        raise DataError(f"class map not found: {path} (write {CLASS_MAP_FORMS})")
    text = read_yaml_text(path, "class map", DataError)
    node = compose_yaml(text, path, DataError)
    raw = yaml.safe_load(text)
    if isinstance(raw, dict) and list(raw) == ["classes"]:  # {classes: {...}} or {classes: [...]}
        raw = raw["classes"]
        node = node.value[0][1] if isinstance(node, yaml.MappingNode) else node
    lines = _entry_lines(node)

    def at(key: Any) -> str:
        return f"{path}:{lines[key]}" if key in lines else str(path)

    if isinstance(raw, list) and raw and all(isinstance(n, str) for n in raw):
        raw = dict(enumerate(raw))
    if not isinstance(raw, dict) or len(raw) < 2:
        raise DataError(f"class map {path} must map at least two classes: {CLASS_MAP_FORMS}")
    if all(isinstance(k, int) and not isinstance(k, bool) for k in raw):
        bad = next((k for k, v in raw.items() if not (isinstance(v, str) and v)), None)
        if bad is not None:
            raise DataError(
                f"class map {at(bad)}: value {bad} has no class name; in the index form every value maps to a name"
            )
        negative = next((k for k in raw if k < 0), None)
        if negative is not None:
            raise DataError(f"class map {at(negative)}: mask value {negative} is negative")
        values = sorted(raw)
        names, form = [str(raw[k]) for k in values], "index"
    elif all(isinstance(k, str) for k in raw) and all(_is_colour(v) for v in raw.values()):
        names, values, form = list(raw), [tuple(v) for v in raw.values()], "colour"
        if len(set(values)) != len(values):
            shared = next(n for n, v in zip(names, values) if values.count(v) > 1)
            raise DataError(f"class map {at(shared)}: two classes share the colour of '{shared}'")
    else:
        odd = next(
            (
                k
                for k, v in raw.items()
                if not (isinstance(k, int) and isinstance(v, str))
                and not (isinstance(k, str) and _is_colour(v))
            ),
            next(iter(raw)),
        )
        raise DataError(
            f"class map {at(odd)}: entry '{odd}' does not fit a layout; use {CLASS_MAP_FORMS}"
        )
    if len(set(names)) != len(names):
        raise DataError(f"class map {path}: duplicate class names")
    return ClassMap(path=path, names=names, form=form, values=values)


def read_mask(
    path: Path, class_map: ClassMap, expected_size: tuple[int, int], image_size: int, fit: str
) -> np.ndarray:
    """``int64 (S, S)`` class ids of one mask, after checking its size and every pixel value."""
    mask = open_image(path, "mask")
    if mask.size != expected_size:
        raise DataError(
            f"mask {path} is {mask.size[0]}x{mask.size[1]} but its image is {expected_size[0]}x{expected_size[1]}"
        )
    if class_map.form == "colour":
        rgb = np.asarray(mask.convert("RGB"), dtype=np.int64)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    else:
        if mask.mode in ("RGB", "RGBA"):
            rgb = np.asarray(mask.convert("RGB"), dtype=np.int64)
            if not (
                np.array_equal(rgb[..., 0], rgb[..., 1])
                and np.array_equal(rgb[..., 0], rgb[..., 2])
            ):
                raise DataError(
                    f"mask {path} is a colour image but {class_map.path.name} maps pixel values; "
                    "give colours ({name: [r, g, b]}) or save single-channel/palette-index masks"
                )
            codes = rgb[..., 0]
        else:
            if mask.mode in ("LA", "PA"):
                mask = mask.getchannel(0)  # drop alpha, keep values / palette indices
            codes = np.asarray(mask, dtype=np.int64)  # L, P (palette indices), I;16, I, 1
    known, class_ids = class_map.lookup()
    pos = np.clip(np.searchsorted(known, codes), 0, len(known) - 1)
    bad = known[pos] != codes
    if bad.any():
        code = int(codes[bad][0])
        shown = (
            f"colour {[code >> 16, (code >> 8) & 255, code & 255]}"
            if class_map.form == "colour"
            else f"value {code}"
        )
        raise DataError(
            f"mask {path} has {shown} ({int(bad.sum())} px) that is not in {class_map.path.name}"
        )
    ids = class_ids[pos].astype(np.uint8 if len(known) <= 256 else np.int32)
    return resize_labels(ids, image_size, fit)


def resize_labels(ids: np.ndarray, size: int, fit: str) -> np.ndarray:
    """``int64 (S, S)`` from a label map of class ids, cropped like the image and resized with
    nearest neighbour so class ids survive."""
    image = square_crop(Image.fromarray(ids), fit)
    return np.asarray(image.resize((size, size), Image.Resampling.NEAREST)).astype(np.int64)


# --------------------------------------------------------------------------- splits


@dataclass
class _Item:
    """One image of a folder dataset: its id (path relative to root), file, label or mask file."""

    id: str
    path: Path
    rel_to_folder: str
    label: int | None = None
    mask_path: Path | None = None
    keys: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for key in (self.id, self.rel_to_folder):
            self.keys.add(key)
            self.keys.add(str(Path(key).with_suffix("")))


def _find_split_file(root: Path, option: Path | None) -> Path | None:
    if option is not None:
        path = option if option.is_absolute() else root / option
        if path.is_dir():
            raise DataError(f"split file {path} is a folder; give a .csv or .json file")
        if not path.is_file():
            raise DataError(f"split file not found: {path}")
        return path
    present = [root / name for name in SPLIT_FILES if (root / name).is_file()]
    if len(present) > 1:
        raise DataError(
            f"both {present[0]} and {present[1]} exist; keep one or choose with the split_file option"
        )
    return present[0] if present else None


def _read_split_entries(path: Path) -> Iterator[tuple[str, str, str]]:
    """``(entry, split, where)`` from a CSV or JSON split file (``where`` locates it for errors)."""
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"split file {path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
            raise DataError(f'split file {path} must be {{"train": [...], "test": [...]}}')
        for split, entries in raw.items():
            for entry in entries:
                if not isinstance(entry, str):
                    raise DataError(
                        f"split file {path}: entries of '{split}' must be file names, got {entry!r}"
                    )
                yield entry, str(split), f"'{split}' list"
        return
    if path.suffix.lower() != ".csv":
        raise DataError(f"split file {path} must be .csv (columns file,split) or .json")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip().lower() for c in (reader.fieldnames or [])]
            if "file" not in columns or "split" not in columns:
                raise DataError(
                    f"split file {path} needs columns 'file' and 'split' (found: {', '.join(columns) or 'none'})"
                )
            reader.fieldnames = columns
            for row in reader:
                yield (
                    (row["file"] or "").strip(),
                    (row["split"] or "").strip(),
                    f"line {reader.line_num}",
                )
    except UnicodeDecodeError as exc:
        raise DataError(f"split file {path} is not UTF-8 text: {exc.reason}") from None


def split_from_file(path: Path, items: list[_Item]) -> dict[str, list[int]]:
    """Indices of ``items`` per split as the split file says; every image must be listed once."""
    index: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        for key in item.keys:
            index.setdefault(key, []).append(i)
    assigned: dict[int, str] = {}
    for entry, split, where in _read_split_entries(path):
        split = split.lower()
        if split not in SPLITS:
            raise DataError(
                f"split file {path}: {where}: split '{split}' is not one of {', '.join(SPLITS)}"
            )
        key = entry.replace("\\", "/")
        hits = index.get(key[2:] if key.startswith("./") else key)
        if not hits:
            raise DataError(
                f"split file {path}: {where}: '{entry}' is not an image of this dataset"
            )
        if len(hits) > 1:
            raise DataError(
                f"split file {path}: {where}: '{entry}' matches {len(hits)} images; give the path relative to the root"
            )
        i = hits[0]
        if assigned.setdefault(i, split) != split:
            raise DataError(
                f"split file {path}: {where}: '{entry}' is listed in both train and test"
            )
    missing = [items[i].id for i in range(len(items)) if i not in assigned]
    if missing:
        raise DataError(
            f"split file {path} gives no split for {len(missing)} image(s), e.g. {missing[0]}"
        )
    return {s: sorted(i for i, v in assigned.items() if v == s) for s in SPLITS}


def stratified_split(strata: np.ndarray, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Hold out ``test_fraction`` of each stratum (at least one image of every stratum with two
    or more, never its last one), seeded."""
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        n = len(members)
        n_test = min(max(int(round(n * test_fraction)), 1 if n >= 2 else 0), n - 1)
        test.extend(rng.permutation(members)[:n_test].tolist())
    held = set(test)
    return {"train": [i for i in range(len(strata)) if i not in held], "test": sorted(test)}


def _make_splits(
    root: Path, options: FolderClsOptions | FolderSegOptions, items: list[_Item], strata: np.ndarray
) -> tuple[dict[str, list[int]], str]:
    split_path = _find_split_file(root, options.split_file)
    if split_path is not None:
        splits, how = split_from_file(split_path, items), f"file {split_path}"
    else:
        splits = stratified_split(strata, options.test_fraction, options.seed)
        how = f"stratified test_fraction={options.test_fraction} seed={options.seed}"
    for name in SPLITS:
        if not splits[name]:
            where = (
                f"split file {split_path}"
                if split_path
                else f"test_fraction={options.test_fraction} with {len(items)} images"
            )
            raise DataError(f"the {name} split is empty ({where})")
    return splits, how


def _track(
    context: object | None, iterable: Iterable[Any], description: str, total: int
) -> Iterable[Any]:
    progress = getattr(context, "progress", None)
    return progress.track(iterable, description, total=total) if progress is not None else iterable


def _sizes(originals: list[tuple[int, int]]) -> dict[str, int]:
    return {f"{w}x{h}": n for (w, h), n in Counter(originals).most_common()}


# --------------------------------------------------------------------------- class-per-folder


def load_folder_cls(options: FolderClsOptions, context: object | None = None) -> Dataset:
    """Load and validate a class-per-folder dataset."""
    root = _require_dir(Path(options.root).expanduser(), "dataset folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"no class folders in {root} (expected {root}/<class>/<image files>)")
    if len(class_dirs) < 2:
        raise DataError(
            f"only one class folder in {root} ({class_dirs[0].name}): a selector needs at least two classes to tell apart"
        )
    items: list[_Item] = []
    for label, folder in enumerate(class_dirs):
        files = list_images(folder)
        if not files:
            raise DataError(f"class folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        items += [
            _Item(
                id=f.relative_to(root).as_posix(),
                path=f,
                rel_to_folder=f.relative_to(root).as_posix(),
                label=label,
            )
            for f in files
        ]
    labels = np.array([it.label for it in items], dtype=np.int64)
    splits, how = _make_splits(root, options, items, labels)
    names = [p.name for p in class_dirs]
    for label, name in enumerate(names):
        if not np.any(labels[splits["train"]] == label):
            raise DataError(f"class '{name}' ({class_dirs[label]}) has no training images ({how})")
    images = np.empty((len(items), options.image_size, options.image_size, 3), dtype=np.uint8)
    originals = []
    for i, item in enumerate(_track(context, items, "load images", len(items))):
        images[i], original = read_image(item.path, options.image_size, options.fit)
        originals.append(original)

    def split(idx: list[int]) -> Split:
        return Split(images=images[idx], labels=labels[idx], ids=[items[i].id for i in idx])

    return Dataset(
        name=root.name,
        task="classification",
        class_names=names,
        train=split(splits["train"]),
        test=split(splits["test"]),
        source=str(root),
        meta={"layout": "class-per-folder", "split": how, "original_sizes": _sizes(originals)},
    )


# --------------------------------------------------------------------------- images + masks


def _by_stem(files: list[Path], folder: Path) -> dict[str, Path]:
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise DataError(
                f"{stems[f.stem]} and {f} in {folder} share the stem '{f.stem}'; masks are matched by stem"
            )
        stems[f.stem] = f
    return stems


def load_folder_seg(options: FolderSegOptions, context: object | None = None) -> Dataset:
    """Load and validate an ``images/`` + ``masks/`` dataset with a class map."""
    root = _require_dir(Path(options.root).expanduser(), "dataset folder")
    image_dir = _require_dir(root / options.images_dir, "image folder")
    mask_dir = _require_dir(root / options.masks_dir, "mask folder")
    class_map = read_class_map(
        options.class_map if options.class_map.is_absolute() else root / options.class_map
    )
    image_files = list_images(image_dir)
    if not image_files:
        raise DataError(f"no images in {image_dir} ({', '.join(IMAGE_EXTENSIONS)})")
    _by_stem(image_files, image_dir)
    masks_by_stem = _by_stem(list_images(mask_dir), mask_dir)
    items = []
    for f in image_files:
        mask_path = masks_by_stem.get(f.stem)
        if mask_path is None:
            raise DataError(f"no mask for image {f} (expected {mask_dir / f.stem}.png)")
        items.append(
            _Item(
                id=f.relative_to(root).as_posix(), path=f, rel_to_folder=f.name, mask_path=mask_path
            )
        )

    s = options.image_size
    images = np.empty((len(items), s, s, 3), dtype=np.uint8)
    masks = np.empty((len(items), s, s), dtype=np.int64)
    present = np.zeros((len(items), len(class_map.names)), dtype=bool)
    originals = []
    for i, item in enumerate(_track(context, items, "load images and masks", len(items))):
        images[i], original = read_image(item.path, s, options.fit)
        assert item.mask_path is not None
        masks[i] = read_mask(item.mask_path, class_map, original, s, options.fit)
        present[i] = np.bincount(masks[i].ravel(), minlength=len(class_map.names)) > 0
        originals.append(original)
    for k, name in enumerate(class_map.names):
        if not present[:, k].any():
            raise DataError(
                f"class '{name}' of {class_map.path} never appears in any mask in {mask_dir}"
            )

    # stratify by each image's rarest present class, so rare classes reach both splits
    frequency = present.sum(axis=0)
    strata = np.array(
        [int(np.flatnonzero(row)[np.argmin(frequency[row])]) for row in present], dtype=np.int64
    )
    splits, how = _make_splits(root, options, items, strata)

    def split(idx: list[int]) -> Split:
        return Split(images=images[idx], masks=masks[idx], ids=[items[i].id for i in idx])

    return Dataset(
        name=root.name,
        task="segmentation",
        class_names=list(class_map.names),
        train=split(splits["train"]),
        test=split(splits["test"]),
        source=str(root),
        meta={
            "layout": "images+masks",
            "split": how,
            "mask_format": class_map.form,
            "class_map": str(class_map.path),
            "original_sizes": _sizes(originals),
        },
    )
