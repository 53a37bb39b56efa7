"""Opt-in cache of frozen image features, for methods that never touch the image tower.

With ``train.feature_cache: K`` a method whose class says ``frozen_image_tower`` (zero-shot, CoOp,
the LA family, post-hoc LA, CoCoOp, Candle, MDPR-CoOp) trains on the image-tower features of K
augmented views of each training image, computed once, and each epoch draws one of the K views per
image (from the image's seed, as its augmentation would be drawn); test images are encoded once
too.  The features are stored under ``$BENCH_CACHE/features/``, keyed by the backbone, the
transform, the images (dataset identity, the split, its file list and labels), the number of views
and the precision, so epochs, seeds and methods of the same protocol and backbone share them::

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
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset

from bench.core.atomic import save_torch, set_aside_note
from bench.core.errors import reason, warn
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


def file_list(dataset: Dataset) -> Optional[list]:
    """The relative image paths behind ``dataset`` (through subset and relabelling wrappers), if it reads files."""
    while dataset is not None:
        if hasattr(dataset, "paths"):
            return list(dataset.paths)
        dataset = getattr(dataset, "dataset", None)
    return None


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

    def views(self, dataset: Dataset, transform, views: int, images_id: dict, workers: int = 0) -> CachedViews:
        """The dataset as cached features of ``views`` views under ``transform`` (computed on a miss)."""
        labels = labels_of(dataset)
        key = digest({**self.identity, "transform": describe(transform), "views": views, "images": images_id,
                      "labels": digest(labels), "files": digest(file_list(dataset)), "length": len(labels)})
        split = str(images_id.get("split"))
        if split in self.held and self.held[split][0] == key:
            return self.held[split][1]
        path = self.root / "features" / f"{key[:32]}.pt"
        features = self.load(path, (len(labels), views))
        if features is None:
            self.log(f"feature cache: encoding {len(labels)} images x {views} view(s) once -> {path}")
            features = self.encode(dataset, transform, views, workers)
            save_torch(path, {"key": key, "features": features})
        self.held[split] = (key, CachedViews(features, labels))
        return self.held[split][1]

    def load(self, path: Path, shape: tuple) -> Optional[torch.Tensor]:
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            features = state["features"]
            if tuple(features.shape[:2]) != shape:
                raise ValueError(f"shape {tuple(features.shape)}, expected {shape} and a feature size")
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
