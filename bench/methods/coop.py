"""CoOp: learnable prompt context vectors (Zhou et al., IJCV 2022).

Follows ``KaiyangZhou/CoOp:trainers/coop.py`` (``PromptLearner``,
``TextEncoder``) at ff61507c790454bce7c5052c3ac39e60772f1f89.  The prompt for class ``c`` is
``[SOS] v_1 ... v_M [CLASS] . [EOS]`` (paper Eq. 2) where the ``v_i`` are
learned (shared by all classes, or one set per class with ``csc``); CLIP
stays frozen and ``p(y=c|x) = softmax_c(s * cos(f(x), g(t_c)))`` (Eq. 3) is
trained with cross-entropy.  ``class_token_position`` puts the class name at
the end, in the middle or at the front of the context.

``csc`` with ``init_text`` is refused: the official code silently learns one
shared context when it is initialised from words, whatever CSC says.  With
``init_text``, ``n_ctx`` is its number of BPE tokens; the official code counts
words, which differs only for words the tokenizer splits.

    bench run --protocol smoke --method coop --set coop.n_ctx=8
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch

from bench.api import (METHODS, Ablation, ClassPrompts, ConfigError, Method, MethodCard, Recipe, Reported,
                       check_init_text)

from .lamp_tables import balanced_reported, few_shot_reported


@dataclass
class CoOpConfig:
    # Number of context tokens; defaults to 16, or to the length of init_text.
    n_ctx: Optional[int] = None
    # Initialise the context from these words (e.g. "a photo of a") instead of N(0, 0.02).
    init_text: Optional[str] = None
    class_token_position: Literal["end", "middle", "front"] = "end"
    csc: bool = False  # class-specific context

    def validate(self, where: str) -> None:
        if self.n_ctx is not None and self.n_ctx < 1:
            raise ConfigError(f"{where}.n_ctx", "must be at least 1")
        check_init_text(self.init_text, where)
        if self.csc and self.init_text:
            raise ConfigError(
                f"{where}.csc",
                "class-specific context cannot start from init_text (official CoOp would silently "
                "share one context); set init_text: null for class-specific context, or csc: false",
            )


# Dassl's CoOp B2N config (vit_b16_ctxv1): 4 context words "a photo of a", SGD
# 0.002, batch 32, 200 epochs, everything else Dassl's defaults (TrainRecipe).
B2N_CTXV1 = dict(options={"init_text": "a photo of a"}, train={"epochs": 200, "batch_size": 32, "lr": 0.002})


def mdpr_table6(params_m: float, epoch_s: float) -> Ablation:
    """A method's row of MDPR Table 6: trainable parameters (M) and seconds per ImageNet-LT training
    epoch on one RTX 3090, as printed (the images/s they imply, 115,846 / seconds, the paper does not print)."""
    return Ablation("MDPR Table 6", "imagenet_lt", {}, {"params_m": params_m, "epoch_s": epoch_s},
                    "one RTX 3090")


CARD = MethodCard(
    label="CoOp",
    paper="Zhou, Yang, Loy, Liu. Learning to Prompt for Vision-Language Models. IJCV 2022 (arXiv:2109.01134)",
    code="KaiyangZhou/CoOp:trainers/coop.py@ff61507c790454bce7c5052c3ac39e60772f1f89",
    spec="methods_spec §4; b2n_anchors §3.2",
    recipes={
        # MDPR App. A.1.2 for its CoOp rows (Tables 2-3); the numbers are those of its
        # training script (Sha843/MDPR:MDPR with Maple/mdpr_clip/main_maple.py at 31fcb5fc):
        # AdamW, CosineAnnealingLR(eta_min=1e-6) stepped per epoch, no warm-up, drop_last False.
        "lt": Recipe(
            source="MDPR App. A.1.2",
            options={"n_ctx": None, "init_text": None},  # None: 16 random vectors, or init_text's length
            train={"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "cosine",
                   "min_lr": 1e-6, "warmup_epochs": 0, "epochs": 20, "batch_size": 128, "drop_last": False},
        ),
        "b2n_lt100": Recipe(source="CoOp configs/trainers/CoOp/vit_b16_ctxv1.yaml (LAMP §4.1)", **B2N_CTXV1),
        "b2n_lt16": Recipe(source="CoOp configs/trainers/CoOp/vit_b16_ctxv1.yaml (as LAMP's)", **B2N_CTXV1),
        # CoOp's few-shot runs (COOP.md) train 1 shot for 50 epochs, 2 and 4 shots for 100, 8 and 16 for 200.
        "b2n_fs": Recipe(source="CoOp configs/trainers/CoOp/vit_b16_ctxv1.yaml, epochs per shot count as COOP.md",
                         **B2N_CTXV1, by_shots={1: {"epochs": 50}, 2: {"epochs": 100}, 4: {"epochs": 100}}),
        # CoOp scripts/cocoop/xd_train.sh trains the ImageNet source with vit_b16_ep50_ctxv1.
        **{family: Recipe(source="CoOp configs/trainers/CoOp/vit_b16_ep50_ctxv1.yaml (xd_train.sh)",
                          options=B2N_CTXV1["options"], train={**B2N_CTXV1["train"], "epochs": 50})
           for family in ("xd_lt100", "xd_lt16")},
    },
    reported={
        **balanced_reported("coop"),
        **few_shot_reported("coop"),
        "cifar100_lt_ir10": Reported("MDPR Table 2", {"all": 70.88, "many": 75.06, "medium": 61.58}),
        "cifar100_lt_ir50": Reported("MDPR Table 2", {"all": 65.70, "many": 79.63, "medium": 58.44, "few": 50.50}),
        "cifar100_lt_ir100": Reported("MDPR Table 2", {"all": 64.34, "many": 79.43, "medium": 64.51, "few": 46.53}),
        "imagenet_lt": Reported("MDPR Table 3", {"all": 68.69, "many": 74.82, "medium": 65.75, "few": 61.75}),
        "places_lt": Reported("MDPR Table 3", {"all": 40.73, "many": 53.10, "medium": 35.58, "few": 29.72}),
        # MDPR Table 4: Places-LT with CLIP ResNets (bench run --protocol places_lt --set protocol.backbone.model=RN50)
        "places_lt [backbone.model=RN50]": Reported("MDPR Table 4", {"all": 20.74, "many": 33.47, "medium": 14.79,
                                                                     "few": 10.92}),
        "places_lt [backbone.model=RN101]": Reported("MDPR Table 4", {"all": 25.01, "many": 39.98, "medium": 18.91,
                                                                      "few": 11.31}),
    },
    ablations=[mdpr_table6(0.008, 1115)],
)


@METHODS.register("coop")
class CoOp(Method):
    """CoOp: learned prompt context vectors on a frozen CLIP (Zhou et al., 2022)."""

    Config = CoOpConfig
    card = CARD
    frozen_image_tower = True  # prompts only in the text tower: features may come from a cache

    @classmethod
    def canonical_options(cls, cfg):
        return ClassPrompts.canonical_context(cfg)  # n_ctx 16 (or init_text's length) is n_ctx null

    def __init__(self, backbone, data, cfg: CoOpConfig):
        super().__init__(backbone, data, cfg)
        self.prompt_learner = ClassPrompts(backbone, data.classnames, cfg.n_ctx, cfg.init_text, cfg.csc,
                                           cfg.class_token_position, where=f"method {self.registry_name}")

    def set_label_space(self, info) -> None:
        self.prompt_learner.set_classnames(info.classnames, info.training_index)

    def text_features(self) -> torch.Tensor:
        return self.backbone.encode_prompts(self.prompt_learner(), self.prompt_learner.tokens)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.image_features(images)
        text = self.text_features()
        return self.backbone.logit_scale * feats @ text.t().to(feats.dtype)
