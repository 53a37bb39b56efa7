"""Datasets: one file per family (synthetic, CIFAR-100-LT, ImageNet-LT/Places-LT lists, the CoOp
datasets), few-shot and long-tail sampling, shipped split files; importing this package registers them.
Imports bench.core only."""
from . import cifar_lt, coop, folder_lt, synthetic  # noqa: F401
from .base import DatasetBundle, TransformedDataset, exponential_counts

__all__ = ["DatasetBundle", "TransformedDataset", "exponential_counts"]
