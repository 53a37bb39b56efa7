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

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, List, Literal, Optional, Tuple

from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torchvision import transforms as T

from .errors import ConfigError

PIXELS = {"min": 1, "max": 4096}
CLIP_MEAN = list(OPENAI_DATASET_MEAN)  # (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = list(OPENAI_DATASET_STD)  # (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TransformConfig:
    size: Optional[int] = field(default=None, metadata=PIXELS)  # crop side; null: the backbone's input size
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    train_crop: Literal["random_resized", "resize_pad_crop"] = "random_resized"
    crop_padding: int = field(default=4, metadata={"min": 0})  # resize_pad_crop: zero padding before the crop
    crop_scale: List[float] = field(default_factory=lambda: [0.08, 1.0])  # RandomResizedCrop area range
    crop_ratio: List[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # and aspect-ratio range
    flip: bool = True  # random horizontal flip in training
    test_resize: Optional[int] = field(default=None, metadata=PIXELS)  # test shorter side; null: size
    mean: List[float] = field(default_factory=lambda: list(CLIP_MEAN))
    std: List[float] = field(default_factory=lambda: list(CLIP_STD))

    def validate(self, where: str) -> None:
        low, high = _pair(self.crop_scale, f"{where}.crop_scale")
        if not 0 < low <= high <= 1:
            raise ConfigError(f"{where}.crop_scale", f"expected 0 < min <= max <= 1, got {self.crop_scale}")
        low, high = _pair(self.crop_ratio, f"{where}.crop_ratio")
        if not 0.01 <= low <= high <= 100:
            raise ConfigError(f"{where}.crop_ratio", f"expected 0.01 <= min <= max <= 100, got {self.crop_ratio}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) != 3:
                raise ConfigError(f"{where}.{name}", "expected 3 numbers (R, G, B)")
        if min(self.std) < 1e-6 or max(map(abs, self.mean + self.std)) > 1e6:
            raise ConfigError(f"{where}.std", "std must be at least 1e-6, and mean and std at most 1e6 in size")


def _pair(values: List[float], where: str) -> Tuple[float, float]:
    if len(values) != 2:
        raise ConfigError(where, f"expected 2 numbers [min, max], got {values}")
    return values[0], values[1]


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


def transform_identity(cfg: TransformConfig, image_size: Optional[int]) -> dict:
    """The settings that decide the images (for result keys): the size resolved,
    crop fields of the crop not used left out."""
    ident = {**dataclasses.asdict(cfg), "size": cfg.size or image_size}
    unused = ["crop_padding"] if cfg.train_crop == "random_resized" else ["crop_scale", "crop_ratio"]
    return {k: v for k, v in ident.items() if k not in unused}


def describe(transform: Callable) -> List[str]:
    """The steps of a composed transform, as recorded in every result."""
    steps = getattr(transform, "transforms", [transform])
    return [repr(step) for step in steps]
