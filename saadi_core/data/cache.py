"""A disk cache of loaded datasets: decode and resize thousands of frames once, reuse them.

Decoding a few thousand 854×480 PNGs and resizing them to the profile's size takes most of a
minute on a small machine, every run. The decoded, resized splits are the same as long as the
files and the loader's options are, so :func:`cached_load` keys them by

* the dataset kind and its validated options (image size, fit, split options, …),
* the resolved dataset root, and
* every file under the root by relative path, size and modification time (``stat`` only — no
  file is read to compute the key, so a cache hit costs a directory walk and one ``np.load``).

Editing, adding or removing any file under the root gives a new key, so a stale split is never
reused. Entries live in ``$SAADI_DATA_CACHE`` (default ``$XDG_CACHE_HOME/saadi/datasets``, i.e.
``~/.cache/saadi/datasets``); ``SAADI_DATA_CACHE=off`` turns the cache off. An entry is written
to a temporary directory and renamed into place, so an interrupted run never leaves half an entry;
an unreadable entry is ignored and rewritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from saadi_core.data.dataset import Dataset, Split

CACHE_ENV = "SAADI_DATA_CACHE"
#: bump when the stored format or the meaning of a cached split changes
CACHE_FORMAT = 1
_OFF = {"off", "0", "false", "no", "none"}


def cache_dir() -> Path | None:
    """Where entries live, or ``None`` when ``SAADI_DATA_CACHE=off``."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "saadi" / "datasets"


def file_fingerprint(root: Path, exclude: Path | None = None) -> list[tuple[str, int, int]]:
    """``(relative path, size, mtime_ns)`` of every file under ``root``, sorted (hidden files and
    folders included: a changed split or annotation file must change the key), skipping the
    folder ``exclude`` (the cache itself, should it live inside the dataset)."""
    entries: list[tuple[str, int, int]] = []
    skip = exclude.resolve() if exclude is not None else None
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if skip is None or Path(folder, d).resolve() != skip)
        for name in sorted(files):
            path = Path(folder, name)
            try:
                st = path.stat()
            except OSError:  # a dangling symlink: part of the listing, without size
                entries.append((path.relative_to(root).as_posix(), -1, -1))
                continue
            entries.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return entries


def cache_key(kind: str, options: dict[str, Any], root: Path, exclude: Path | None = None) -> str:
    from saadi_core.store import content_key

    resolved = root.expanduser().resolve()
    return content_key(
        "dataset-cache",
        CACHE_FORMAT,
        kind,
        options,
        str(resolved),
        file_fingerprint(resolved, exclude),
    )


def _save(entry: Path, dataset: Dataset) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))
    try:
        arrays: dict[str, np.ndarray] = {}
        for name in ("train", "test"):
            split: Split = getattr(dataset, name)
            arrays[f"{name}_images"] = split.images
            if split.labels is not None:
                arrays[f"{name}_labels"] = split.labels
            if split.masks is not None:  # class ids fit a byte for every dataset we know
                small = split.masks.size == 0 or int(split.masks.max()) < 256
                arrays[f"{name}_masks"] = split.masks.astype(np.uint8) if small else split.masks
        np.savez(tmp / "arrays.npz", **arrays)  # uncompressed: loading speed is the point
        record = {
            "format": CACHE_FORMAT,
            "name": dataset.name,
            "task": dataset.task,
            "class_names": dataset.class_names,
            "source": dataset.source,
            "meta": dataset.meta,
            "ids": {"train": dataset.train.ids, "test": dataset.test.ids},
        }
        (tmp / "dataset.json").write_text(json.dumps(record), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load(entry: Path) -> Dataset | None:
    try:
        record = json.loads((entry / "dataset.json").read_text(encoding="utf-8"))
        if record.get("format") != CACHE_FORMAT:
            return None
        with np.load(entry / "arrays.npz") as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError):
        return None

    def split(name: str) -> Split:
        masks = arrays.get(f"{name}_masks")
        return Split(
            images=arrays[f"{name}_images"],
            ids=list(record["ids"][name]),
            labels=arrays.get(f"{name}_labels"),
            masks=None if masks is None else masks.astype(np.int64),
        )

    return Dataset(
        name=record["name"],
        task=record["task"],
        class_names=list(record["class_names"]),
        train=split("train"),
        test=split("test"),
        source=record["source"],
        meta=dict(record["meta"]),
    )


def cached_load(kind: str, options: Any, root: Path, load: Callable[[], Dataset]) -> Dataset:
    """``load()``'s dataset, from the cache when the same files were loaded with the same
    ``options`` before. ``meta["cache"]`` says ``"hit"``, ``"stored"`` or ``"off"``.

    Datasets with an oracle (the embedded toy sets) are never cached: they are drawn, not read."""
    directory = cache_dir()
    if directory is None:
        dataset = load()
        dataset.meta["cache"] = "off"
        return dataset
    dumped = options.model_dump(mode="json") if hasattr(options, "model_dump") else dict(options)
    entry = directory / f"{kind}-{cache_key(kind, dumped, Path(root), exclude=directory)[:24]}"
    if (entry / "dataset.json").is_file():
        found = _load(entry)
        if found is not None:
            found.meta["cache"] = "hit"
            return found
    dataset = load()
    if dataset.oracle is None:
        dataset.meta["cache"] = "stored"
        try:
            _save(entry, dataset)
        except OSError as exc:  # a full or read-only cache disk must not stop the run
            dataset.meta["cache"] = f"not stored: {exc}"
    return dataset


def cached_loader(kind: str, loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
    """Wrap a ``loader(options, context=None)`` whose options have a ``root`` with the cache."""

    def load(options: Any, context: object | None = None) -> Dataset:
        return cached_load(kind, options, Path(options.root), lambda: loader(options, context))

    load.__doc__ = f"{loader.__doc__ or ''} (through the dataset cache, see saadi_core.data.cache)"
    return load
