"""Base class for benchmark methods.

A method is an ``nn.Module`` registered by name in ``METHODS``::

    @METHODS.register("my_method")
    class MyMethod(Method):
        '''One line shown by `bench list`.'''
        Config = MyConfig          # a dataclass; protocol/CLI options are checked against it

        card = MethodCard(paper=..., code=..., recipes={"lt": Recipe(...)})

        def __init__(self, backbone, data, cfg): ...
        def forward(self, images):  # -> logits [batch, num_classes]

Parameters with ``requires_grad=True`` are trained (and checkpointed); a
method with ``trains = False`` is evaluated without training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import ClipBackbone
from .recipes import Recipe


@dataclass
class NoOptions:
    pass


@dataclass(frozen=True)
class Reported:
    """Numbers a paper reports for a method on one of our protocols (percent)."""

    source: str  # e.g. "MDPR Table 2"
    metrics: Mapping[str, float]  # our metric names: all, many, medium, few, ...
    note: str = ""  # how the paper's setup differs from ours, where known


@dataclass(frozen=True)
class MethodCard:
    """What a method is, which code it follows, how its papers train it, what they report."""

    paper: str  # citation of the paper that defines the method
    code: str  # the official code followed: owner/repo:path at a commit
    recipes: Mapping[str, Recipe] = field(default_factory=dict)  # protocol family -> recipe
    reported: Mapping[str, Reported] = field(default_factory=dict)  # protocol name -> numbers


@dataclass
class ClassInfo:
    """What a method may know about the label space at construction time."""

    classnames: List[str]
    train_counts: List[int]
    template: str = "a photo of a {}."


class Method(nn.Module):
    Config = NoOptions
    card: ClassVar[Optional[MethodCard]] = None
    trains: ClassVar[bool] = True  # False: no training recipe, evaluated as built

    def __init__(self, backbone: ClipBackbone, data: ClassInfo, cfg):
        super().__init__()
        self.backbone = backbone
        self.data = data
        self.cfg = cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def record_fields(self) -> dict:
        """Extra JSON fields for the result record (e.g. the prior a loss used)."""
        return {}

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised features from the frozen image encoder (no gradient)."""
        with torch.no_grad():
            return self.backbone.encode_image(images, normalize=True)

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state(self) -> Dict[str, torch.Tensor]:
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k in names}

    def load_trainable_state(self, state: Dict[str, torch.Tensor]) -> None:
        missing = {name for name, p in self.named_parameters() if p.requires_grad} - set(state)
        if missing:
            raise ValueError(f"checkpoint lacks trainable parameters {sorted(missing)}")
        self.load_state_dict(state, strict=False)
