"""Image transforms declared by the protocol; the default is the Dassl/CoOp pipeline.

Every method in CoOp, CoCoOp, MaPLe, PromptSRC and Candle trains on images from
Dassl's builder (``KaiyangZhou/Dassl.pytorch:dassl/data/transforms/transforms.py``
at c61a1b570ac6333bd50fb5ae06aea59002fb20bb, with the CoOp configs' ``INPUT``
block): images read as RGB (``dassl/utils/tools.py`` ``read_image``), then

- train: ``RandomResizedCrop(224, scale=(0.08, 1), bicubic)``, horizontal flip (p = 0.5);
- test: ``Resize(224, bicubic)`` of the shorter side, ``CenterCrop(224)``;
- both: ``ToTensor``, ``Normalize`` with CLIP's mean and std.

open_clip's own train transform crops with scale (0.9, 1) and never flips, so it
is not used.  ``size: null`` means the backbone's input size (224 for ViT-B/16).
``train_crop: resize_pad_crop`` is MDPR's CIFAR geometry instead
(``Sha843/MDPR:MDPR with Maple/mdpr_clip/main_maple.py`` at 31fcb5fc4427a86c7d5c2c0907ef157c4da55856):
``Resize(224, bicubic)``, ``RandomCrop(224, padding=4)``, flip.

A method that fits itself on frozen features (``Method.fit_views``) names a deterministic view of each
training image instead: ``five_crop`` is the test resize then ``FiveCrop`` (LFA's training features,
``saic-fi/LFA:dataset/transforms.py`` at 2ee3bba3e45bbe03c7b7c6c0b770e1b2ec7e781f), the five crops
stacked in torchvision's order (top-left, top-right, bottom-left, bottom-right, centre).

    >>> train_tf, test_tf = build_transforms(TransformConfig(), image_size=224)
    >>> test_tf(pil_image).shape
    torch.Size([3, 224, 224])
    >>> view_transform("five_crop", TransformConfig(), image_size=224)(pil_image).shape
    torch.Size([5, 3, 224, 224])
"""
from __future__ import annotations

from typing import Callable, List, Tuple

import torch
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from bench.config.transforms import TransformConfig


class ToRGB:
    """Dassl reads every image with ``.convert("RGB")`` (grey and RGBA files occur)."""

    def __call__(self, image):
        return image.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def build_transforms(cfg: TransformConfig, image_size: int) -> Tuple[Callable, Callable]:
    """``(train, test)`` transforms from PIL images to normalised tensors."""
    size = cfg.size or image_size
    mode = T.InterpolationMode(cfg.interpolation)
    tail = [T.ToTensor(), T.Normalize(cfg.mean, cfg.std)]
    if cfg.train_crop == "random_resized":
        train = [ToRGB(), T.RandomResizedCrop(size, scale=tuple(cfg.crop_scale), ratio=tuple(cfg.crop_ratio),
                                              interpolation=mode)]
    else:
        train = [ToRGB(), T.Resize(size, interpolation=mode), T.RandomCrop(size, padding=cfg.crop_padding)]
    if cfg.flip:
        train.append(T.RandomHorizontalFlip())
    test = [ToRGB(), T.Resize(cfg.test_resize or size, interpolation=mode), T.CenterCrop(size)]
    return T.Compose(train + tail), T.Compose(test + tail)


class FiveCrops:
    """The five ``size`` crops of an image (torchvision's order), each through ``tail``, stacked ``[5, ...]``."""

    def __init__(self, size: int, tail: Callable):
        self.size, self.tail = size, tail

    def __call__(self, image):
        return torch.stack([self.tail(crop) for crop in TF.five_crop(image, self.size)])

    def __repr__(self) -> str:
        steps = ", ".join(describe(self.tail))
        return f"FiveCrops(size={self.size}, each=[{steps}])"


VIEWS = ("five_crop",)  # the deterministic views a fitting method may ask for (Method.fit_views)


def view_transform(view: str, cfg: TransformConfig, image_size: int) -> Callable:
    """The transform of ``view`` (one of VIEWS) from a PIL image to its crops ``[views, 3, size, size]``;
    the centre crop is the test transform's image."""
    if view not in VIEWS:
        raise ValueError(f"unknown view '{view}' (known: {', '.join(VIEWS)})")
    size = cfg.size or image_size
    resize = T.Resize(cfg.test_resize or size, interpolation=T.InterpolationMode(cfg.interpolation))
    return T.Compose([ToRGB(), resize, FiveCrops(size, T.Compose([T.ToTensor(), T.Normalize(cfg.mean, cfg.std)]))])


def describe(transform: Callable) -> List[str]:
    """The steps of a composed transform, as recorded in every result."""
    steps = getattr(transform, "transforms", [transform])
    return [repr(step) for step in steps]
