"""Zero-shot CLIP: hand-written prompts, no training (Radford et al., 2021)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from bench.method import Method
from bench.registry import METHODS


@dataclass
class ZeroShotConfig:
    # Prompt templates with one "{}" for the class name; their text features are
    # averaged (prompt ensembling).  Empty means the dataset's own template.
    templates: List[str] = field(default_factory=list)

    def validate(self, where: str) -> None:
        for i, template in enumerate(self.templates):
            if template.count("{}") != 1:
                raise ConfigError(f"{where}.templates[{i}]", "must contain exactly one '{}'")


@METHODS.register("zeroshot")
class ZeroShotCLIP(Method):
    """Zero-shot CLIP with hand-written prompt templates (no training)."""

    Config = ZeroShotConfig

    def __init__(self, backbone, data, cfg: ZeroShotConfig):
        super().__init__(backbone, data, cfg)
        templates = cfg.templates or [data.template]
        with torch.no_grad():
            per_template = [
                backbone.encode_text(backbone.tokenize([t.format(c) for c in data.classnames]))
                for t in templates
            ]
            weights = F.normalize(torch.stack(per_template).mean(0), dim=-1)
        self.register_buffer("text_features", weights, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.image_features(images)
        return self.backbone.logit_scale * feats @ self.text_features.t()
