"""Data loaders for training and evaluation: worker processes sized to the CPUs on a GPU, pinned
memory, persistent workers, and augmentation seeded per (seed, epoch, image).

Each training image's augmentation draws from its own seed, so the results do not depend on how
many worker processes load the data (nor on which worker gets which image), and a run resumed at
epoch ``e`` draws what an uninterrupted one draws there, with workers kept alive across epochs::

    loader = TrainLoader(dataset, batch_size=32, drop_last=True, seed=1, device=device, workers=4)
    for epoch in range(epochs):
        for images, labels in loader.epoch(epoch): ...
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .usage import usable_cpus

MAX_LOADER_WORKERS = 8  # past this, JPEG decoding outpaces a ViT-B/16 step on one GPU


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def item_seed(epoch_seed_value: int, index: int) -> int:
    return (epoch_seed_value * 1_000_003 + index) % 2**63


def loader_workers(requested: Optional[int], device: torch.device, share: int = 1) -> int:
    """Worker processes for a loader: ``requested``, or on a GPU this process's share of the CPUs
    (``share`` processes split them) less one for the main process, at most 8; none on a CPU, whose
    cores run the model."""
    if requested is not None:
        return requested
    if device.type != "cuda":
        return 0
    return max(1, min(MAX_LOADER_WORKERS, usable_cpus() // max(share, 1) - 1))


class EpochSampler(Sampler):
    """Yields ``(index, item seed)`` in the order ``torch.randperm`` draws from the epoch's seed."""

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        base = epoch_seed(self.seed, self.epoch)
        order = torch.randperm(self.length, generator=torch.Generator().manual_seed(base)).tolist()
        return iter([(i, item_seed(base, i)) for i in order])


class SeededItems(Dataset):
    """``dataset[i]`` for an ``(i, seed)`` item, its random transforms drawn from ``seed`` (the
    caller's random state is left as it was)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Tuple[int, int]):
        index, seed = item
        generator = torch.default_generator  # seeded directly: torch.manual_seed costs 60x more per image
        state = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(state)


class TrainLoader:
    """A shuffled, per-image seeded loader built once; :meth:`epoch` gives one epoch's batches."""

    def __init__(self, dataset: Dataset, batch_size: int, drop_last: bool, seed: int, device: torch.device,
                 workers: int = 0):
        self.sampler = EpochSampler(len(dataset), seed)
        self.loader = DataLoader(
            SeededItems(dataset), batch_size=batch_size, sampler=self.sampler, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
            drop_last=drop_last and len(dataset) >= batch_size,  # Dassl's rule
        )

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        return self.loader


def eval_loader(dataset: Dataset, batch_size: int, device: torch.device, workers: int = 0) -> DataLoader:
    """Test images in order, pinned for the copy to a GPU."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda")
