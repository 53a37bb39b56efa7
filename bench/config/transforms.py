"""The image transforms a protocol declares (``transforms:``), and the part of them that decides
the images, for result keys; ``bench.model.transforms`` builds the torchvision pipelines::

    cfg = from_dict(TransformConfig, {"size": 224, "flip": False}, "protocol.transforms")
    transform_identity(cfg, image_size=224)      # the settings that enter the cell key
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Literal, Optional, Tuple

from bench.core.errors import ConfigError

PIXELS = {"min": 1, "max": 4096}
# CLIP's normalisation, open_clip.constants OPENAI_DATASET_MEAN / _STD (written out so that
# configuration never imports torch; tests/test_transforms.py holds them equal)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


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


def transform_identity(cfg: TransformConfig, image_size: Optional[int]) -> dict:
    """The settings that decide the images (for result keys): the size resolved,
    crop fields of the crop not used left out."""
    ident = {**dataclasses.asdict(cfg), "size": cfg.size or image_size}
    unused = ["crop_padding"] if cfg.train_crop == "random_resized" else ["crop_scale", "crop_ratio"]
    return {k: v for k, v in ident.items() if k not in unused}
