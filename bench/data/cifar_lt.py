"""CIFAR-100-LT: CIFAR-100 train set subsampled to an exponential profile.

Class ``i`` keeps ``n_i = floor(500 * IR^(-i/99))`` images (IR 10, 50 or 100),
chosen as LDAM-DRW's ``IMBALANCECIFAR100`` does: a ``numpy`` RNG seeded with
``subsample_seed`` shuffles each class's indices in class order and keeps the
first ``n_i``.  The test set is the full, balanced CIFAR-100 test set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from bench.core.coerce import ENV
from bench.core.errors import BenchError
from bench.core.registry import DATASETS
from .base import DatasetBundle, exponential_counts, label_counts

@dataclass
class CIFAR100LTConfig:
    imbalance_ratio: float = field(default=100.0, metadata={"min": 1})
    max_per_class: int = field(default=500, metadata={"min": 1, "max": 500})
    subsample_seed: int = 0
    root: str = field(default="data/cifar100", metadata=ENV)
    download: bool = field(default=True, metadata=ENV)


def long_tail_indices(targets: Sequence[int], counts: List[int], seed: int) -> List[int]:
    """Indices keeping ``counts[c]`` random images of each class ``c``."""
    targets = np.asarray(targets)
    rng = np.random.RandomState(seed)
    keep: List[int] = []
    for cls, n in enumerate(counts):
        idx = np.where(targets == cls)[0]
        rng.shuffle(idx)
        keep.extend(idx[:n].tolist())
    return keep


def load_cifar100(root: str, train: bool, download: bool):
    from torchvision.datasets import CIFAR100

    path = Path(root)
    if not download and not path.is_dir():
        raise BenchError(
            f"dataset root '{root}' does not exist (protocol.dataset.root); "
            "point --data-root at a folder holding cifar-100-python/ or set download: true"
        )
    try:
        return CIFAR100(root=str(path), train=train, download=download)
    except RuntimeError as err:  # not found / corrupted
        raise BenchError(f"CIFAR-100 under '{root}': {err}") from None
    except OSError as err:  # download failed (no network, disk full, ...)
        raise BenchError(f"could not download CIFAR-100 to '{root}': {err}") from None


@DATASETS.register("cifar100_lt")
class CIFAR100LT:
    """CIFAR-100-LT (exponential imbalance, IR 10/50/100), torchvision download."""

    Config = CIFAR100LTConfig

    @staticmethod
    def build(cfg: CIFAR100LTConfig) -> DatasetBundle:
        full_train = load_cifar100(cfg.root, train=True, download=cfg.download)
        test: Dataset = load_cifar100(cfg.root, train=False, download=False)
        num_classes = len(full_train.classes)
        counts = exponential_counts(num_classes, cfg.max_per_class, cfg.imbalance_ratio)
        keep = long_tail_indices(full_train.targets, counts, cfg.subsample_seed)
        train = Subset(full_train, keep)
        actual = label_counts([full_train.targets[i] for i in keep], num_classes)
        if actual != counts:
            short = [c for c in range(num_classes) if actual[c] < counts[c]]
            raise BenchError(
                f"CIFAR-100 under '{cfg.root}' has too few training images for classes {short[:5]}"
            )
        names = [name.replace("_", " ") for name in full_train.classes]
        return DatasetBundle(train=train, test=test, classnames=names, train_counts=actual)
