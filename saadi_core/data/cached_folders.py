"""The folder loaders (``folder-cls``, ``folder-seg``) through the dataset cache
(:mod:`saadi_core.data.cache`): a run re-reads a big folder only when one of its files changed."""

from __future__ import annotations

from saadi_core.data.cache import cached_loader
from saadi_core.data.folders import load_folder_cls as _load_folder_cls
from saadi_core.data.folders import load_folder_seg as _load_folder_seg

load_folder_cls = cached_loader("folder-cls", _load_folder_cls)
load_folder_seg = cached_loader("folder-seg", _load_folder_seg)
