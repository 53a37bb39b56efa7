"""TCP+LA: TCP trained with the logit-adjusted loss (LAMP App. C; Menon et al., ICLR 2021).

The model is TCP's (``bench/methods/tcp.py``, spec_lamp_baselines.md §4); training minimises
``CE(z + tau · log pi, y) + kg_weight · L_kg`` with ``pi`` the class prior of the exact training
subset, over the training (base) classes only (:class:`bench.methods.coop_la.LogitAdjusted`, ``tau`` 1), and
prediction uses the raw logits ``z``.  This is what LAMP's text says it ran (spec §2.3 REC).

``tcp_la@promptlt`` is the reading of ``asaxuc/PromptLT:trainers/tcp.py`` at
54593992449d75c06d960fa628ae504b45267bc0, which LAMP's group very likely used (spec §2.3, B18, B24): its
LA criterion is built and never called, so training is plain ``CE + 8 · L_kg`` over a classifier of
base ∪ new class names (base first; labels are base classes), the KG term covers the new classes too,
and the context starts from "a photo of a".  Class-name transductive: it uses the names of the new
classes (``ClassInfo.new_classnames``) in training.  Its predictions on the base classes are the
all-class logits' base columns, on the new classes those of a classifier over the new names, as
PromptLT's slices of its all-class logits (each class prompt runs alone through the text tower).

    bench run --protocol smoke_b2n --method tcp_la tcp_la@promptlt --set tcp_la.tau=0.5
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

from bench.api import METHODS, MethodCard, la_loss

from .coop_la import LAOptions, LogitAdjusted
from .lamp_tables import b2n_reported, xd_dg_reported
from .tcp import TCP, TCP_CODE, TCP_SPEC, TCPConfig, tcp_recipes

LAMP_LA = "LAMP's run with the logit-adjusted loss (App. C), mean of 5 runs"
# Literal strings: `bench list` reads the papers from the source without importing it (bench.config.catalog).
TCP_LA_PAPER = ("Menon, Jayasumana, Rawat, Jain, Veit, Kumar. Long-tail learning via logit adjustment. ICLR 2021; on "
                "Yao, Zhang, Xu. TCP: Textual-based Class-aware Prompt tuning for Visual-Language Model. CVPR 2024 "
                "(arXiv:2311.18231)")
PROMPTLT_PAPER = ("Yao, Zhang, Xu. TCP: Textual-based Class-aware Prompt tuning for Visual-Language Model. CVPR 2024 "
                  "(arXiv:2311.18231); as LAMP's group's PromptLT trains it. Class-name transductive: uses the new "
                  "class names in training")
PROMPTLT_CODE = "asaxuc/PromptLT:trainers/tcp.py@54593992449d75c06d960fa628ae504b45267bc0"


@dataclass
class TCPLAConfig(TCPConfig, LAOptions):
    pass


CARD = MethodCard(
    label="TCP+LA",
    paper=TCP_LA_PAPER,
    code=TCP_CODE,
    spec=f"{TCP_SPEC}; LA as methods_spec §2 (google-research/google-research:logit_adjustment/utils.py"
         "@1d4d2f1aa6f2883a790d2ae46a6ee8ab150d8f31), §2.3 REC",
    recipes=tcp_recipes(" + LA tau 1 (LAMP §4.1 '+LA')"),
    reported={**b2n_reported("tcp_la", LAMP_LA), "xd_dg_lamp/imb100": xd_dg_reported("tcp_la")},
)


@METHODS.register("tcp_la")
class TCPLA(LogitAdjusted, TCP):
    """TCP+LA: TCP trained with the logit-adjusted loss plus its KG term, tau = 1 (LAMP App. C)."""

    Config = TCPLAConfig
    card = CARD
    loss = TCP.loss  # the LA term replaces TCP's CE only; the KG term stays

    def class_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return la_loss(logits, labels, self.offsets)


@dataclass
class PromptLTConfig(TCPConfig):
    init_text: Optional[str] = "a photo of a"  # PromptLT forces the word initialisation (spec B24)


PROMPTLT_CARD = MethodCard(
    label="TCP+LA (PromptLT)",
    paper=PROMPTLT_PAPER,
    code=PROMPTLT_CODE,
    spec=f"{TCP_SPEC}; §2.3, B18, B24: plain CE + KG over base ∪ new class names, context from 'a photo of a'",
    recipes=tcp_recipes(" (PromptLT's run of TCP: plain CE over base ∪ new, word-initialised context)",
                        {"init_text": "a photo of a"}),
)


@METHODS.register("tcp_la@promptlt")
class TCPPromptLT(TCP):
    """TCP as PromptLT trains it for LAMP: plain CE over base and new class names (class-name transductive)."""

    Config = PromptLTConfig
    card = PROMPTLT_CARD

    def classes_of(self, info) -> List[str]:
        extra = list(info.new_classnames) if info is self.data else []
        self.hidden = len(extra)  # trailing classes trained on as negatives, left out of predictions
        return list(info.classnames) + extra

    def forward(self, images: torch.Tensor):
        out = super().forward(images)
        return out if self.training or not self.hidden else out[:, :-self.hidden]

    def record_text_features(self) -> Optional[torch.Tensor]:
        text = self.text_features()
        return text[:-self.hidden] if self.hidden else text
