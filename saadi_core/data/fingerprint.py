"""The content of a dataset as one hash: what the data stage's cache key is made of.

Keying the data stage by its options alone reused a cache after the folder changed (a class
added, images replaced, ``classes.yaml`` or the split file edited) and every later stage followed
the stale result. The fingerprint hashes what the loader *produced* — class names, the task, every
split's image ids, pixels, labels and masks — so any change in the files that changes what a run
trains on changes the key of the data stage and, through it, of everything downstream, while a
change that does not (a touched mtime, a renamed unrelated file) keeps the cache. Hashing the
arrays costs milliseconds for the datasets this toolkit targets (a few thousand images).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from saadi_core.data.dataset import Dataset, Split


def _update_array(digest: hashlib._Hash, array: np.ndarray | None) -> None:
    if array is None:
        digest.update(b"none")
        return
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))


def _update_split(digest: hashlib._Hash, split: Split) -> None:
    digest.update(json.dumps(list(split.ids)).encode())
    for array in (split.images, split.labels, split.masks):
        _update_array(digest, array)


def dataset_fingerprint(dataset: Dataset) -> str:
    """SHA-256 of the dataset's task, classes and every split's (layouts included) ids, images,
    labels and masks."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"task": dataset.task, "classes": list(dataset.class_names)}).encode())
    for split in (dataset.train, dataset.test):
        _update_split(digest, split)
    if dataset.layouts is not None:  # absent for most datasets: their keys stay what they were
        _update_split(digest, dataset.layouts)
    return digest.hexdigest()
