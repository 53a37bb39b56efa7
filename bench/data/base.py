"""What every dataset builder returns, and long-tail helpers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from torch.utils.data import Dataset


@dataclass
class DatasetBundle:
    """A dataset ready for a protocol: items are ``(PIL.Image, label)``."""

    train: Dataset
    test: Dataset
    classnames: List[str]
    train_counts: List[int]  # training images per class; defines many/medium/few
    template: str = "a photo of a {}."
    # For base-to-new protocols: the labels seen in training ("base").
    base_classes: Optional[List[int]] = None
    # Stable class identities (ImageNet wnids), when class names are not unique or another dataset
    # shares these classes: an evaluation on ImageNet-A finds its 200 classes among ImageNet's 1000
    # by id.  None: the class names are the identities.
    class_ids: Optional[List[str]] = None
    # Base-to-new only: the new classes' training images, drawn like the base ones (few-shot cap and
    # long-tail rule), for transductive steps that use them without labels (LAMP's bias pass).
    new_train: Optional[Dataset] = None
    # CoOp's name of the dataset ("EuroSAT", "ImageNet"): the key of the per-dataset template tables
    # some methods carry (KgCoOp, TCP, LFA) and of a recipe's by_dataset entries; None outside CoOp's sets.
    dataset: Optional[str] = None


class TransformedDataset(Dataset):
    """Applies an image transform to ``(image, label)`` items."""

    def __init__(self, dataset: Dataset, transform: Callable):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        image, label = self.dataset[index]
        return self.transform(image), label


def exponential_counts(num_classes: int, max_per_class: int, imbalance_ratio: float) -> List[int]:
    """Per-class counts ``n_i = floor(max * IR^(-i / (C - 1)))`` for i = 0..C-1.

    Written as in LDAM-DRW's ``get_img_num_per_cls`` (``max * (1/IR)^(i/(C-1))``
    truncated to int), which is the usual CIFAR-LT construction.
    """
    if num_classes == 1:
        return [max_per_class]
    factor = 1.0 / imbalance_ratio
    return [int(max_per_class * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]


def label_counts(labels: Sequence[int], num_classes: int) -> List[int]:
    counts = [0] * num_classes
    for label in labels:
        counts[label] += 1
    return counts
