"""A synthetic long-tailed image dataset made in code: no files, no download.

Each class (a word such as "tiger") has a fixed smooth colour pattern, its
prototype; an image is the prototype, randomly shifted, plus pixel noise.  The class structure is
learnable, the data are identical for a given ``data_seed``, and building it
takes well under a second.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import List, Optional

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from bench.core.errors import ConfigError
from bench.core.registry import DATASETS
from .base import DatasetBundle, exponential_counts

# Short, single-token-ish words so that prompts stay short for tiny models.
WORDS = [
    "apple", "bicycle", "castle", "dolphin", "elephant", "forest", "guitar", "house",
    "island", "jellyfish", "kettle", "lamp", "mountain", "orange", "piano", "rabbit",
    "tiger", "tractor", "whale", "zebra",
]


@dataclass
class SyntheticLTConfig:
    # Made in memory: the caps keep a typo from rendering a billion images.
    num_classes: int = field(default=10, metadata={"min": 1, "max": 1000})
    max_per_class: int = field(default=150, metadata={"min": 1, "max": 10_000})
    imbalance_ratio: float = field(default=30.0, metadata={"min": 1})
    test_per_class: int = field(default=20, metadata={"min": 1, "max": 10_000})
    image_size: int = field(default=32, metadata={"min": 1, "max": 512})
    noise: float = field(default=0.35, metadata={"min": 0, "max": 100})  # pixel noise std, in units of [0, 1]
    max_shift: int = field(default=3, metadata={"min": 0})  # random translation in pixels
    data_seed: int = field(default=0, metadata={"min": 0})  # which images are drawn (class patterns are fixed)
    # Base-to-new: the first half of the classes (rounded up, CoOp's subsample_classes) are the base
    # classes and the only ones with training images; the test set has every class.
    base_to_new: bool = False
    # Another synthetic dataset: which concepts it shows (the smoke cross-dataset targets start past
    # the training ones; the smoke ImageNet-A twin is a subset of them) and a domain shift (0: none,
    # 1: every pixel's colour channels rotated), as ImageNet-Sketch or -R shift ImageNet.
    first_class: int = field(default=0, metadata={"min": 0, "max": 10_000})
    shift: float = field(default=0.0, metadata={"min": 0, "max": 1})

    @property
    def shots(self) -> int:
        """The per-class cap, as CoOp datasets' ``shots`` (a recipe's ``by_shots`` reads it)."""
        return self.max_per_class

    def validate(self, where: str) -> None:
        if self.max_shift > self.image_size:
            raise ConfigError(f"{where}.max_shift", "must not exceed image_size")
        if self.base_to_new and self.num_classes < 2:
            raise ConfigError(f"{where}.num_classes", "base_to_new needs at least 2 classes (base and new)")


class TensorImages(Dataset):
    """uint8 images ``[N, H, W, 3]`` with labels, served as PIL images."""

    def __init__(self, images: torch.Tensor, labels: List[int]):
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return Image.fromarray(self.images[index].numpy()), self.labels[index]


def class_names(num_classes: int, first: int = 0) -> List[str]:
    if first + num_classes <= len(WORDS):
        return WORDS[first : first + num_classes]
    return [f"class {i}" for i in range(first, first + num_classes)]


def prototype(name: str, size: int) -> torch.Tensor:
    """The fixed visual pattern ``[3, size, size]`` in [0, 1] of concept ``name``.

    It depends only on the name, so the synthetic pretraining corpus
    (bench.model.synthetic_clip) and every synthetic dataset agree on what a
    "tiger" looks like.
    """
    digest = hashlib.sha256(name.encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    coarse = torch.rand(1, 3, 4, 4, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]


def render(protos: torch.Tensor, labels: List[int], noise: float, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """uint8 images ``[N, H, W, 3]``: each label's prototype, shifted, plus noise."""
    label_t = torch.tensor(labels, dtype=torch.long)
    images = protos[label_t].clone()
    if max_shift:
        shifts = torch.randint(-max_shift, max_shift + 1, (len(labels), 2), generator=gen)
        for i, (dy, dx) in enumerate(shifts.tolist()):
            images[i] = torch.roll(images[i], shifts=(dy, dx), dims=(1, 2))
    images += noise * torch.randn(images.shape, generator=gen)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous()


def new_training_images(cfg: SyntheticLTConfig, protos: torch.Tensor, trained: int) -> Optional[TensorImages]:
    """Base-to-new: the new classes' training images, long-tailed like the base ones (own generator,
    so the training and test images are those drawn without them)."""
    if not cfg.base_to_new:
        return None
    gen = torch.Generator().manual_seed(cfg.data_seed + 1)
    counts = [max(1, c) for c in exponential_counts(cfg.num_classes - trained, cfg.max_per_class, cfg.imbalance_ratio)]
    labels = [trained + c for c, n in enumerate(counts) for _ in range(n)]
    return TensorImages(render(protos, labels, cfg.noise, cfg.max_shift, gen), labels)


@DATASETS.register("synthetic_lt")
class SyntheticLT:
    """Synthetic long-tailed colour patterns made in code (for smoke tests)."""

    Config = SyntheticLTConfig

    @staticmethod
    def build(cfg: SyntheticLTConfig) -> DatasetBundle:
        names = class_names(cfg.num_classes, cfg.first_class)
        protos = torch.stack([prototype(n, cfg.image_size) for n in names])
        protos = (1 - cfg.shift) * protos + cfg.shift * protos.roll(1, dims=1)
        gen = torch.Generator().manual_seed(cfg.data_seed)
        trained = math.ceil(cfg.num_classes / 2) if cfg.base_to_new else cfg.num_classes
        counts = [max(1, c) for c in exponential_counts(trained, cfg.max_per_class, cfg.imbalance_ratio)]
        counts += [0] * (cfg.num_classes - trained)
        train_labels = [c for c, n in enumerate(counts) for _ in range(n)]
        test_labels = [c for c in range(cfg.num_classes) for _ in range(cfg.test_per_class)]
        train = TensorImages(render(protos, train_labels, cfg.noise, cfg.max_shift, gen), train_labels)
        test = TensorImages(render(protos, test_labels, cfg.noise, cfg.max_shift, gen), test_labels)
        base = list(range(trained)) if cfg.base_to_new else None
        return DatasetBundle(train=train, test=test, classnames=names, train_counts=counts, base_classes=base,
                             class_ids=list(names), new_train=new_training_images(cfg, protos, trained))
