"""MaPLe: multi-modal prompt learning with coupled text and vision prompts (Khattak et al., CVPR 2023).

Follows ``muzairkhattak/multimodal-prompt-learning:trainers/maple.py`` (``MultiModalPromptLearner``) and
``clip/model.py`` (``ResidualAttentionBlock_MaPLe``) at 69bce21ae8eda80ad6187534b2dce09cf6c59e17
(methods_spec §5, b2n_anchors §3.4).  Text context ``P_0`` (n tokens) and deep text prompts
``P_1 .. P_{J-1}`` enter the text transformer at layers ``0 .. J-1``; the vision prompts are their
images under coupling functions, ``Ṽ_k = F_k(P_k)`` with ``F_k`` a linear map from text to vision
width (paper Eq. 5-7).  CLIP is frozen; the loss is cross-entropy on ``s · cos(f̃(x), g̃(t_c))``.

Trainable at ViT-B/16, n_ctx 2, depth 9: ``9·(512·768 + 768) + 9·2·512 = 3,555,072`` parameters.
With ``init_text`` the first n_ctx tokens of it are learned and the rest stay frozen, so MaPLe
starts from the full "a photo of a {class}." prompt; ``init_text: null`` draws N(0, 0.02).  The
official code silently switches to random context when n_ctx > 4; here ``init_text`` is used for
any n_ctx up to its token count, and a longer n_ctx is an error.
Precision: under the official ``PREC: fp16`` the context and the first coupling are fp16 parameters
updated in fp16 and every other prompt is rounded to fp16 at use (its ``PREC: fp32`` does not run).
Ours are fp32 parameters with the trainer's autocast; against a full official fp16 run expect
logits to differ by about 1e-2 at scale 100 (methods_spec §5).

    bench run --protocol smoke --method maple --set maple.depth=2
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

import torch.nn as nn

from bench.api import (METHODS, ClassPrompts, DeepPromptCLIP, MethodCard, Recipe, Reported, check_depth,
                       check_init_text, normal_prompts, text_layers, vision_layers, vision_width)

from .coop import CARD as COOP_CARD, mdpr_table6
from .cpt_tables import THIRD_PARTY, reported_rows
from .lamp_tables import balanced_ablations, few_shot_reported


@dataclass
class MaPLeConfig:
    n_ctx: int = field(default=2, metadata={"min": 1})
    # The first n_ctx tokens initialise the context; null: N(0, 0.02).
    init_text: Optional[str] = "a photo of a"
    # Prompt depth J: layers 0 .. J-1 of both towers get prompts (official PROMPT_DEPTH >= 1).
    depth: int = field(default=9, metadata={"min": 1})

    def validate(self, where: str) -> None:
        check_init_text(self.init_text, where)


class MaPLePrompts(nn.Module):
    """Context, deep text prompts and the text-to-vision coupling functions."""

    def __init__(self, backbone, classnames, cfg: MaPLeConfig, where: str):
        super().__init__()
        layers = min(text_layers(backbone), vision_layers(backbone))
        check_depth(cfg.depth, layers, f"{where}.depth", "text and vision transformers (the fewer)")
        self.text = ClassPrompts(backbone, classnames, cfg.n_ctx, cfg.init_text, where=where, partial_init=True)
        d_text, d_vision = backbone.width, vision_width(backbone)
        device = backbone.device
        self.proj = nn.Linear(d_text, d_vision, device=device)
        self.deep_text = normal_prompts(cfg.depth - 1, self.text.n_ctx, d_text, device)
        # Official: _get_clones(one Linear) -> every deep coupling starts from the same weights.
        one = nn.Linear(d_text, d_vision, device=device)
        self.deep_proj = nn.ModuleList([copy.deepcopy(one) for _ in range(cfg.depth - 1)])

    def vision(self):
        """``(first, deep)`` vision prompts: the coupling functions applied to the text prompts."""
        return self.proj(self.text.ctx), [f(p) for f, p in zip(self.deep_proj, self.deep_text)]


CARD = MethodCard(
    label="MaPLe",
    paper="Khattak, Rasheed, Maaz, Khan, Khan. MaPLe: Multi-modal Prompt Learning. CVPR 2023 (arXiv:2210.03117)",
    code="muzairkhattak/multimodal-prompt-learning:trainers/maple.py@69bce21ae8eda80ad6187534b2dce09cf6c59e17",
    spec="methods_spec §5; b2n_anchors §3.4",
    recipes={
        # MDPR App. A.1.2 trains its MaPLe rows with CoOp's lt recipe and random context, n_ctx 2.
        "lt": Recipe(source="MDPR App. A.1.2 (n_ctx 2, random init; spec A5)",
                     options={"n_ctx": 2, "init_text": None, "depth": 9}, train=dict(COOP_CARD.recipes["lt"].train)),
        "b2n_lt100": Recipe(source="MaPLe configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml (LAMP §4.1)",
                            options={"n_ctx": 2, "init_text": "a photo of a", "depth": 9},
                            train={"epochs": 5, "batch_size": 4, "lr": 0.0035}),
        "b2n_lt16": Recipe(source="MaPLe configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml (CPT Table 2)",
                           options={"n_ctx": 2, "init_text": "a photo of a", "depth": 9},
                           train={"epochs": 5, "batch_size": 4, "lr": 0.0035}),
        **{family: Recipe(source="MaPLe configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml",
                          options={"n_ctx": 2, "init_text": "a photo of a", "depth": 3},
                          train={"epochs": 2, "batch_size": 4, "lr": 0.0026})
           for family in ("xd_lt100", "xd_lt16")},
    },
    reported={
        **few_shot_reported("maple"),
        **reported_rows("maple", f"{THIRD_PARTY}; its τ = 1 row is MaPLe's published HMs"),
        "cifar100_lt_ir10": Reported("MDPR Table 2", {"all": 81.98, "many": 84.58, "medium": 76.19}),
        "cifar100_lt_ir50": Reported("MDPR Table 2", {"all": 77.09, "many": 87.34, "medium": 71.98, "few": 65.39}),
        "cifar100_lt_ir100": Reported("MDPR Table 2", {"all": 74.09, "many": 88.14, "medium": 73.46, "few": 58.43}),
        "imagenet_lt": Reported("MDPR Table 3", {"all": 69.02, "many": 77.20, "medium": 64.90, "few": 60.37}),
        "places_lt": Reported("MDPR Table 3", {"all": 41.37, "many": 54.33, "medium": 36.45, "few": 28.73}),
    },
    ablations=[
        mdpr_table6(3.6, 1361),
        *balanced_ablations("maple"),  # LAMP Table 2 (its reported numbers there are CPT Table 2's)
    ],
)


@METHODS.register("maple")
class MaPLe(DeepPromptCLIP):
    """MaPLe: coupled deep prompts in the text and vision towers (Khattak et al., 2023)."""

    Config = MaPLeConfig
    card = CARD

    def __init__(self, backbone, data, cfg: MaPLeConfig):
        super().__init__(backbone, data, cfg)
        self.prompt_learner = MaPLePrompts(backbone, data.classnames, cfg, f"method {self.registry_name}")
