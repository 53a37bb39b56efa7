"""Opt-in cache of frozen image features, for methods that never touch the image tower.

With ``train.feature_cache: K`` a method whose class says ``frozen_image_tower`` (zero-shot, CoOp,
the LA family, post-hoc LA, CoCoOp, Candle, MDPR-CoOp) trains on the image-tower features of K
augmented views of each training image, computed once, and each epoch draws one of the K views per
image (from the image's seed, as its augmentation would be drawn); test images are encoded once
too.  The features are stored under ``$BENCH_CACHE/features/``, keyed by the backbone, the
transform, the images (dataset identity, the split, its labels, and the files it reads: their resolved
folder, names, sizes and modification times), the number of views and the precision, so epochs, seeds
and methods of the same protocol and backbone share them.  A file is used only if the full key stored
in it is this key and its features match the checksum stored with them; otherwise it is set aside
with a warning and the features are encoded again::

    cache = FeatureCache(root, backbone, backbone_identity, device, precision="fp32")
    train_set = cache.views(dataset, train_tf, views=10, images_id={...})   # yields (raw feature, label)
    method.features_given = True                                            # batches are features now

Augmentation is then sampled from K fixed views instead of anew each epoch, hence a different
result key (``feature_cache`` enters it) and a labelled row in the leaderboard and reports.
A method that fits itself (``Method.fit_views``, :mod:`bench.engine.fitting`) gets its training images'
deterministic crops from here too, always: one view of several crops per image (``[N, 1, crops, D]``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset

from bench.core.atomic import save_torch, set_aside_note
from bench.core.errors import reason, warn
from bench.core.namedfiles import file_kind
from bench.core.registry import DATASETS
from bench.data import TransformedDataset
from bench.model.transforms import describe
from .loading import SeededItems, item_seed
from .train import amp_dtype, autocast

VIEW_SEED = 7_919  # the views are fixed: the same for every seed, method and run
BATCH = 256


class CachedViews(Dataset):
    """``(raw feature of one of the K views, label)``; under :class:`bench.engine.loading.SeededItems`
    the view is drawn from the item's seed, so each epoch and image draws its own."""

    def __init__(self, features: torch.Tensor, labels):
        self.features, self.labels = features, list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        views = self.features.shape[1]
        view = int(torch.randint(views, ())) if views > 1 else 0
        return self.features[index, view], self.labels[index]


def labels_of(dataset: Dataset) -> list:
    labels = getattr(dataset, "labels", None)
    return list(labels) if labels is not None else [int(dataset[i][1]) for i in range(len(dataset))]


def data_files(dataset: Dataset) -> Optional[Tuple[str, List[str]]]:
    """The folder and relative paths of the files behind ``dataset`` (through subset and relabelling
    wrappers), if it reads files: listed images, or the batch files of torchvision's CIFAR."""
    while dataset is not None:
        if hasattr(dataset, "paths"):
            return str(getattr(dataset, "root", "") or ""), list(dataset.paths)
        if hasattr(dataset, "base_folder") and hasattr(dataset, "train_list"):  # torchvision's CIFAR
            batches = dataset.train_list if dataset.train else dataset.test_list
            return str(dataset.root), [os.path.join(dataset.base_folder, name) for name, _ in batches]
        dataset = getattr(dataset, "dataset", None)
    return None


def file_stat(path: str) -> Optional[list]:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # missing: a key of its own, and encoding then names the file
    return [stat.st_size, stat.st_mtime_ns]


def data_identity(root: str, paths: List[str]) -> dict:
    """Which copy of the files: the resolved folder (another ``--data-root`` with the same names is
    another copy) and each file's size and modification time.  A stat per file costs a fraction of a
    second for ImageNet-LT's 116k images, where hashing their contents would read every image."""
    return {"root": os.path.realpath(root), "files": digest(paths),
            "stats": digest([file_stat(os.path.join(root, path)) for path in paths])}


def checksum(features: torch.Tensor) -> str:
    """sha256 of the tensor's bytes (read in place, no copy)."""
    return hashlib.sha256(features.contiguous().view(-1).view(torch.uint8).numpy()).hexdigest()


def images_id(protocol, split: str, seed: int) -> dict:
    """What names a protocol's split for the cache: the dataset's identity, the split, and the seed
    for datasets whose draw follows it (Dassl's few-shot draws)."""
    ident = protocol.identity()
    seeded = getattr(DATASETS.get(protocol.dataset_name), "seeded", False)
    return {"dataset": ident["dataset"], "evaluations": ident.get("evaluations"), "split": split,
            "data_seed": seed if seeded else None}


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class FeatureCache:
    """Raw image-tower features of datasets under transforms, K views per image, on disk; the last
    features of each split stay in memory, so the cells of a run read each file once."""

    def __init__(self, root: Path, backbone, backbone_identity: dict, device: torch.device, precision: str,
                 log: Callable[[str], None] = print):
        self.root, self.backbone, self.device, self.log = Path(root), backbone, device, log
        self.precision = precision  # the recipe's eval precision: what the frozen tower runs in
        self.identity = {"backbone": backbone_identity, "precision": str(amp_dtype(device, precision))}
        self.held: Dict[str, Tuple[str, CachedViews]] = {}  # split -> (key, its features): one per split
        self.data: Dict[str, dict] = {}  # files -> their identity: each file stat'ed once per run, not per cell

    def files_identity(self, dataset: Dataset) -> Optional[dict]:
        found = data_files(dataset)
        if found is None:
            return None  # in memory (synthetic data): its dataset identity in images_id says which
        named = digest([os.path.realpath(found[0]), found[1]])
        if named not in self.data:
            self.data[named] = data_identity(*found)
        return self.data[named]

    def views(self, dataset: Dataset, transform, views: int, images_id: dict, workers: int = 0) -> CachedViews:
        """The dataset as cached features of ``views`` views under ``transform`` (computed on a miss)."""
        labels = labels_of(dataset)
        key = digest({**self.identity, "transform": describe(transform), "views": views, "images": images_id,
                      "labels": digest(labels), "data": self.files_identity(dataset), "length": len(labels)})
        split = str(images_id.get("split"))
        if split in self.held and self.held[split][0] == key:
            return self.held[split][1]
        path = self.root / "features" / f"{key[:32]}.pt"
        features = self.load(path, key, (len(labels), views))
        if features is None:
            self.log(f"feature cache: encoding {len(labels)} images x {views} view(s) once -> {path}")
            features = self.encode(dataset, transform, views, workers)
            save_torch(path, {"key": key, "features": features, "sha256": checksum(features)})
        self.held[split] = (key, CachedViews(features, labels))
        return self.held[split][1]

    def load(self, path: Path, key: str, shape: tuple) -> Optional[torch.Tensor]:
        """The features stored under ``key``, or None (with a warning and the file set aside) when the file
        holds another key (copied or renamed into place), another shape, or features that changed since, or is
        not a file at all (a FIFO, a link to nowhere)."""
        if not os.path.lexists(path):
            return None
        try:
            kind = file_kind(path)
            if kind:  # opening a FIFO would wait for a writer for good
                raise ValueError(f"it is {kind}, not a file")
            state = torch.load(path, map_location="cpu", weights_only=True)
            features = state["features"]
            if state["key"] != key:
                raise ValueError("it holds the features of another key (a cache file copied or renamed here)")
            if not isinstance(features, torch.Tensor) or tuple(features.shape[:2]) != shape:
                raise ValueError(f"shape {tuple(getattr(features, 'shape', ()))}, expected {shape} and a feature size")
            if state.get("sha256") != checksum(features):
                raise ValueError("its features do not match their stored checksum (changed after they were written)")
            return features
        except Exception as err:  # truncated, not a torch file, wrong content: many exception types
            warn(f"feature cache '{path}' cannot be used ({reason(err)}); "
                 f"{set_aside_note(path)}, encoding again")
            return None

    @torch.no_grad()
    def encode(self, dataset: Dataset, transform, views: int, workers: int) -> torch.Tensor:
        """``[N, views, D]`` float32 (``[N, views, crops, D]`` for a transform that crops several times):
        view ``k`` of image ``i`` is transformed under its own fixed seed."""
        seeded = SeededItems(TransformedDataset(dataset, transform))
        dtype = amp_dtype(self.device, self.precision)
        out = []
        for view in range(views):
            items = [(i, item_seed(VIEW_SEED + view, i)) for i in range(len(dataset))]
            loader = DataLoader(seeded, batch_size=BATCH, sampler=items, num_workers=workers,
                                pin_memory=self.device.type == "cuda")
            parts = [self.encode_batch(images, dtype) for images, _ in loader]
            out.append(torch.cat(parts))
        return torch.stack(out, dim=1)

    def encode_batch(self, images: torch.Tensor, dtype) -> torch.Tensor:
        """Raw features of ``[B, 3, H, W]`` images, or ``[B, crops, D]`` of a transform that makes several
        crops of each image (``[B, crops, 3, H, W]``: the five-crop view of a fitting method)."""
        flat = images.flatten(0, 1) if images.dim() == 5 else images
        with autocast(self.device, dtype):
            features = self.backbone.encode_image(flat.to(self.device), normalize=False).float().cpu()
        return features.unflatten(0, images.shape[:2]) if images.dim() == 5 else features
