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

    >>> train_tf, test_tf = build_transforms(TransformConfig(), image_size=224)
    >>> test_tf(pil_image).shape
    torch.Size([3, 224, 224])
"""
from __future__ import annotations

from typing import Callable, List, Tuple

from torchvision import transforms as T

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


def describe(transform: Callable) -> List[str]:
    """The steps of a composed transform, as recorded in every result."""
    steps = getattr(transform, "transforms", [transform])
    return [repr(step) for step in steps]
