"""CoCoOp: context conditioned on each image by a small meta-network (Zhou et al., CVPR 2022).

Follows ``KaiyangZhou/CoOp:trainers/cocoop.py`` (``PromptLearner``, ``CustomCLIP``) at
ff61507c790454bce7c5052c3ac39e60772f1f89 (b2n_anchors §3.3): the meta-net
``Linear(d, d // 16) -> ReLU -> Linear(d // 16, width)`` maps the L2-normalised image feature
``f(x)`` to a shift ``π(x)``; image ``x`` is classified with the context ``v_m + π(x)``
(paper Eq. 4-5), so the text encoder runs once per image and class:
``p(y|x) = softmax_c(s · cos(f(x), g(t_c(x))))``.  The official code loops over the images;
we encode a few images' prompts per pass (same values, fewer kernel launches).  As for CoOp,
``n_ctx`` with ``init_text`` must be its number of BPE tokens (the official code counts words and
ignores N_CTX), and the official fp16 meta-net runs in fp32 here.

    bench run --protocol smoke --method cocoop --set cocoop.n_ctx=2 --set cocoop.init_text=null
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from bench.api import (METHODS, ClassPrompts, Method, MethodCard, Recipe, Reported, check_init_text, pooled_positions,
                       pooled_span, run_prefix, encode_suffixes, shared_length, splittable, text_tokens)

from .coop import CARD as COOP_CARD
from .cpt_tables import THIRD_PARTY, reported_rows
from .lamp_tables import balanced_reported, few_shot_reported

# Text sequences per encoder pass: bounds memory at large batches x many classes.
SEQUENCES_PER_PASS = 4096


@dataclass
class CoCoOpConfig:
    n_ctx: Optional[int] = field(default=None, metadata={"min": 1})  # None: init_text's length (or 16)
    init_text: Optional[str] = "a photo of a"

    def validate(self, where: str) -> None:
        check_init_text(self.init_text, where)


def meta_net(dim: int, width: int, device) -> nn.Sequential:
    hidden = max(1, dim // 16)
    return nn.Sequential(OrderedDict([
        ("linear1", nn.Linear(dim, hidden, device=device)),
        ("relu", nn.ReLU(inplace=True)),
        ("linear2", nn.Linear(hidden, width, device=device)),
    ]))


CARD = MethodCard(
    label="CoCoOp",
    paper="Zhou, Yang, Loy, Liu. Conditional Prompt Learning for Vision-Language Models. CVPR 2022 (arXiv:2203.05557)",
    code="KaiyangZhou/CoOp:trainers/cocoop.py@ff61507c790454bce7c5052c3ac39e60772f1f89",
    spec="b2n_anchors §3.3",
    recipes={
        "lt": Recipe(source="MDPR App. A.1.2 training recipe (as CoOp's) with CoCoOp's own context (project choice)",
                     options={"n_ctx": None, "init_text": "a photo of a"}, train=dict(COOP_CARD.recipes["lt"].train)),
        **{family: Recipe(source="CoOp configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
                          options={"n_ctx": None, "init_text": "a photo of a"},
                          train={"epochs": 10, "batch_size": 1, "lr": 0.002})
           for family in ("b2n_lt100", "b2n_lt16")},
    },
    reported={
        **balanced_reported("cocoop"),
        **few_shot_reported("cocoop"),
        **reported_rows("cocoop", THIRD_PARTY),
        "cifar100_lt_ir10": Reported("MDPR Table 2", {"all": 72.29, "many": 76.75, "medium": 62.35}),
        "cifar100_lt_ir50": Reported("MDPR Table 2", {"all": 66.38, "many": 80.20, "medium": 60.20, "few": 49.00}),
        "cifar100_lt_ir100": Reported("MDPR Table 2", {"all": 63.90, "many": 80.69, "medium": 65.20, "few": 42.80}),
        "imagenet_lt": Reported("MDPR Table 3", dict.fromkeys(("all", "many", "medium", "few")),
                                note="MDPR prints '–': out of memory in its authors' runs (1,000 classes)"),
        "places_lt": Reported("MDPR Table 3", {"all": 41.12, "many": 52.95, "medium": 35.84, "few": 31.39}),
    },
)


@METHODS.register("cocoop")
class CoCoOp(Method):
    """CoCoOp: prompt context shifted per image by a meta-network (Zhou et al., 2022)."""

    Config = CoCoOpConfig
    text_depends_on_image = True  # the meta-net shifts the context by each image's feature
    card = CARD
    frozen_image_tower = True  # the meta-net reads the frozen image feature

    @classmethod
    def canonical_options(cls, cfg):
        return ClassPrompts.canonical_context(cfg)  # n_ctx 16 (or init_text's length) is n_ctx null

    def __init__(self, backbone, data, cfg: CoCoOpConfig):
        super().__init__(backbone, data, cfg)
        self.prompt_learner = ClassPrompts(backbone, data.classnames, cfg.n_ctx, cfg.init_text,
                                           where=f"method {self.registry_name}")
        self.meta_net = meta_net(backbone.embed_dim, backbone.width, backbone.device)

    def set_label_space(self, info) -> None:
        self.prompt_learner.set_classnames(info.classnames, info.training_index)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.image_features(images)  # normalised, as the meta-net's input in the official code
        ctx = self.prompt_learner.ctx + self.meta_net(feats).unsqueeze(1)  # [B, n_ctx, width]
        step = max(1, SEQUENCES_PER_PASS // self.prompt_learner.tokens.shape[0])
        return torch.cat([self.chunk_logits(feats[i : i + step], ctx[i : i + step])
                          for i in range(0, feats.shape[0], step)])

    def chunk_logits(self, feats: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """``[b, C]`` logits of ``b`` images, each with its own context ``ctx`` ``[b, n_ctx, width]``."""
        learner = self.prompt_learner
        if learner.position == "end" and splittable(self.backbone):
            return self.split_chunk_logits(feats, ctx)
        b, n_cls = ctx.shape[0], learner.tokens.shape[0]
        prompts = torch.cat([learner(c.unsqueeze(0).expand(n_cls, -1, -1)) for c in ctx])  # [b*C, L, width]
        text = self.backbone.encode_prompts(prompts, learner.tokens.repeat(b, 1)).view(b, n_cls, -1)
        return self.backbone.logit_scale * torch.einsum("bd,bcd->bc", feats, text.to(feats.dtype))

    def split_chunk_logits(self, feats: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """:meth:`chunk_logits` with each image's start token and context (and any words every class
        prompt shares after it) run once per image, and only the class positions per (image, class)
        against their keys and values (bench.model.shared_prefix): the same logits to float rounding."""
        learner, backbone = self.prompt_learner, self.backbone
        tokens = learner.tokens[:, : pooled_span(backbone, learner.tokens)]
        pooled = pooled_positions(backbone.text, tokens)
        shared = shared_length(tokens, pooled)  # 1 + n_ctx at least: the context is the same for every class
        words = learner.token_suffix[:1, : shared - 1 - learner.n_ctx].expand(ctx.shape[0], -1, -1)
        start = learner.token_prefix[:1].expand(ctx.shape[0], -1, -1)
        prefix = text_tokens(backbone, torch.cat([start, ctx.to(start.dtype), words], dim=1))  # [b, shared, D]
        _, cache = run_prefix(backbone.text.transformer, prefix)
        rest = learner.token_suffix[:, shared - 1 - learner.n_ctx : tokens.shape[1] - 1 - learner.n_ctx]
        text = encode_suffixes(backbone, text_tokens(backbone, rest, offset=shared), pooled - shared, cache,
                               per_pass=SEQUENCES_PER_PASS)  # [b, C, embed_dim]
        return backbone.logit_scale * torch.einsum("bd,bcd->bc", feats, text.to(feats.dtype))
