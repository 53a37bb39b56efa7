"""IVLP: independent deep prompts in the vision and language towers (PromptSRC's baseline).

Follows ``muzairkhattak/PromptSRC:trainers/independentVL.py`` (``VLPromptLearner``) and ``clip/model.py``
(``ResidualAttentionBlock_IVLP``, ``VisionTransformer`` with ``VPT_shallow``) at
bb95c77b634d63488f2cad81ff4a72d53bdd06d5, config ``configs/trainers/IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml``
(methods_spec §9.1).  Unlike MaPLe the towers are not coupled: the text context and deep text prompts
(``text_depth`` layers) and the vision prompts (``vision_depth`` layers, N(0, 0.02), appended after the
patch tokens before ``ln_pre``) are separate parameters.  ``vision_depth: 0`` means no vision prompts,
as in the official code; the text depth is at least 1 (the context itself).  CPT builds on IVLP and
its Table 1 baseline row is IVLP.

Trainable at ViT-B/16, 4 + 4 tokens, depth 9 / 9: ``9·4·512 + 9·4·768 = 46,080`` parameters.
As for MaPLe: the official code rounds every prompt to fp16 (``PREC: fp16``) and silently uses random
text context when n_ctx > 4; ours are fp32 with autocast, and ``init_text`` initialises any n_ctx up
to its token count (methods_spec §5).

    bench run --protocol smoke --method ivlp --set ivlp.vision_depth=0
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch.nn as nn

from bench.api import (METHODS, ClassPrompts, DeepPromptCLIP, MethodCard, Recipe, check_depth, check_init_text,
                       normal_prompts, text_layers, vision_layers, vision_width)

from .coop import CARD as COOP_CARD


@dataclass
class IVLPConfig:
    n_ctx_text: int = field(default=4, metadata={"min": 1})
    n_ctx_vision: int = field(default=4, metadata={"min": 1})
    # The first n_ctx_text tokens initialise the text context; null: N(0, 0.02).
    init_text: Optional[str] = "a photo of a"
    text_depth: int = field(default=9, metadata={"min": 1})
    vision_depth: int = field(default=9, metadata={"min": 0})  # 0: no vision prompts

    def validate(self, where: str) -> None:
        check_init_text(self.init_text, where)


class IVLPPrompts(nn.Module):
    def __init__(self, backbone, classnames, cfg: IVLPConfig, where: str):
        super().__init__()
        check_depth(cfg.text_depth, text_layers(backbone), f"{where}.text_depth", "text transformer")
        if cfg.vision_depth:
            check_depth(cfg.vision_depth, vision_layers(backbone), f"{where}.vision_depth", "vision transformer")
        self.text = ClassPrompts(backbone, classnames, cfg.n_ctx_text, cfg.init_text, where=where,
                                 partial_init=True, n_ctx_field="n_ctx_text")
        self.deep_text = normal_prompts(cfg.text_depth - 1, self.text.n_ctx, backbone.width, backbone.device)
        self.vision_prompts = (normal_prompts(cfg.vision_depth, cfg.n_ctx_vision, vision_width(backbone),
                                                 backbone.device) if cfg.vision_depth else nn.ParameterList())

    def vision(self):
        """``(first, deep)``: layer-0 vision prompts and those of the next layers (None, [] without)."""
        prompts = list(self.vision_prompts)
        return (prompts[0], prompts[1:]) if prompts else (None, [])


IVLP_B2N = dict(options={"n_ctx_text": 4, "n_ctx_vision": 4, "init_text": "a photo of a", "text_depth": 9,
                         "vision_depth": 9},
                train={"epochs": 20, "batch_size": 4, "lr": 0.0025})

CARD = MethodCard(
    label="IVLP",
    paper="Khattak, Wasim, Naseer, Khan, Yang, Khan. Self-regulating Prompts: Foundational Model Adaptation "
          "without Forgetting (PromptSRC). ICCV 2023 (arXiv:2307.06948); IVLP is its independent V-L baseline",
    code="muzairkhattak/PromptSRC:trainers/independentVL.py@bb95c77b634d63488f2cad81ff4a72d53bdd06d5",
    spec="methods_spec §9.1",
    recipes={
        "lt": Recipe(source="project choice: MDPR's lt training recipe (spec §11 has no IVLP lt entry)",
                     options=dict(IVLP_B2N["options"]), train=dict(COOP_CARD.recipes["lt"].train)),
        # Only the config's numbers; CPT trains IVLP for 12 epochs in its B2N tables (supp 6.1).
        "b2n_lt100": Recipe(source="PromptSRC configs/trainers/IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml", **IVLP_B2N),
        "b2n_lt16": Recipe(source="PromptSRC IVLP config, 12 epochs as CPT supp 6.1",
                           options=dict(IVLP_B2N["options"]), train={**IVLP_B2N["train"], "epochs": 12}),
    },
)


@METHODS.register("ivlp")
class IVLP(DeepPromptCLIP):
    """IVLP: independent deep vision and language prompts (PromptSRC baseline, Khattak et al., 2023)."""

    Config = IVLPConfig
    card = CARD

    def __init__(self, backbone, data, cfg: IVLPConfig):
        super().__init__(backbone, data, cfg)
        self.prompt_learner = IVLPPrompts(backbone, data.classnames, cfg, f"method {self.registry_name}")
