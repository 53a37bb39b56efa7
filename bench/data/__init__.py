"""Datasets; importing this package registers them."""
from . import cifar_lt, coop, folder_lt, synthetic  # noqa: F401
from .base import DatasetBundle, TransformedDataset, exponential_counts

__all__ = ["DatasetBundle", "TransformedDataset", "exponential_counts"]
