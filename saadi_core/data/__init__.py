"""Datasets: the in-memory dataset record, embedded toy datasets and loaders for real layouts."""

from saadi_core.data.dataset import Dataset, Oracle, Split

__all__ = ["Dataset", "Oracle", "Split"]
