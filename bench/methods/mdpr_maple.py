"""MDPR on the MaPLe pathway: ``mdpr_maple`` (a knowledge-base file) and ``mdpr_maple_offlinekb``.

MaPLe's coupled prompts (``bench/methods/maple.py``) give the prompted image feature ``f`` (the router's query,
with gradient) and ``ŷ_cb``; MDPR's router, losses and fusion are in ``bench/methods/mdpr.py`` (methods_spec §7).
MDPR-MaPLe loss weights (App. A.1.4): λ = (1, 1.0, 0.05, 0.005), T = 2; n_ctx 2 (paper; the code's
default is 16, spec A5).  ``init: mdpr`` (default) draws the prompt learner as MDPR's own
``MultiModalPromptLearner`` does (``module_maple.py`` lines 73-96): the first and every deep coupling a
Linear of its own with weights N(0, 0.02) and zero bias, the deep text prompts N(0, 0.01); ``init: maple``
keeps MaPLe's (one default Linear cloned into every deep coupling, deep text prompts N(0, 0.02)).  The
context follows ``init_text`` either way (MDPR's code: random N(0, 0.02), as the lt recipe sets it).
Trainable at ViT-B/16: MaPLe 3,555,072 + 1,116,288 + the logit scale
(paper Table 6: 4.7 M).

    bench run --protocol smoke --method mdpr_maple_offlinekb
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from bench.api import METHODS, Ablation, MethodCard

from .maple import CARD as MAPLE_CARD, MaPLe, MaPLeConfig, MaPLePrompts
from .mdpr import MDPR, MDPROptions
from .mdpr_coop import CODE, mdpr_lt, mdpr_table6, recipes

MAPLE_WEIGHTS = {"lambda_sem": 1.0, "lambda_pa": 0.05, "lambda_ka": 0.005, "temperature": 2.0}


# MDPR Figure 3 as quoted in §4.5 (MaPLe base): + the semantic head alone (both regularisers off), and +
# both regularisers (the default, = Table 3).  The MaPLe base (Places-LT Few 28.73) is MaPLe's Table 3 row.
FIGURE3 = "MDPR Figure 3"
SEMANTIC_ONLY = {"lambda_pa": 0.0, "lambda_ka": 0.0}
ABLATIONS = [
    Ablation(FIGURE3, "places_lt", SEMANTIC_ONLY, {"few": 48.39},
             "quoted in the paper's text; the figure prints no numbers"),
    Ablation(FIGURE3, "places_lt", {"lambda_pa": 0.05, "lambda_ka": 0.005}, {"few": 50.99},
             "quoted in the paper's text; the same as its Table 3 row"),
    Ablation(FIGURE3, "imagenet_lt", {"lambda_pa": 0.05, "lambda_ka": 0.005}, {"many": 79.42},
             "quoted in the paper's text; the same as its Table 3 row"),
    mdpr_table6(4.7, 1375),
]


@dataclass
class MDPRMaPLeConfig(MaPLeConfig, MDPROptions):
    lambda_sem: float = dataclasses.field(default=1.0, metadata={"min": 0})
    lambda_ka: float = dataclasses.field(default=0.005, metadata={"min": 0})
    init: Literal["mdpr", "maple"] = "mdpr"  # the prompt learner's initial draw: MDPR's code or MaPLe's

    def validate(self, where: str) -> None:
        MaPLeConfig.validate(self, where)
        MDPROptions.validate(self, where)


CARD = MethodCard(
    label="MDPR (MaPLe)",
    paper="Jia et al. MDPR: an LLM knowledge base with multi-dimensional dynamic prompt routing for long-tailed "
          "prompt tuning of CLIP. Findings of EMNLP 2025; on MaPLe (Khattak et al., CVPR 2023)",
    code=CODE,
    spec="methods_spec §7, §13 A1-A12; init: module_maple.py MultiModalPromptLearner (init: maple is MaPLe's)",
    recipes=recipes(MAPLE_CARD, MAPLE_WEIGHTS, "MaPLe"),
    reported={
        "cifar100_lt_ir10": mdpr_lt(84.73, 86.32, 81.19),
        "cifar100_lt_ir50": mdpr_lt(81.38, 88.68, 76.90, 74.94),
        "cifar100_lt_ir100": mdpr_lt(79.25, 87.60, 81.26, 67.17),
        "imagenet_lt": mdpr_lt(75.57, 79.42, 74.02, 70.04, "MDPR Table 3"),
        "places_lt": mdpr_lt(50.94, 50.32, 51.42, 50.99, "MDPR Table 3"),
    },
    ablations=ABLATIONS,
)


OFFLINE_CARD = MethodCard(
    label="MDPR (MaPLe, offline KB)",
    paper="MDPR (Jia et al., Findings of EMNLP 2025) with an offline template knowledge base instead of the "
          "paper's LLM one; on MaPLe (Khattak et al., CVPR 2023)",
    code=CARD.code, spec=CARD.spec, recipes=CARD.recipes)


@torch.no_grad()
def draw_like_mdpr(prompts: MaPLePrompts) -> None:
    """MDPR's ``MultiModalPromptLearner`` init: couplings N(0, 0.02) with zero bias, each its own draw;
    deep text prompts N(0, 0.01)."""
    for coupling in [prompts.proj, *prompts.deep_proj]:
        nn.init.normal_(coupling.weight, std=0.02)
        nn.init.zeros_(coupling.bias)
    for prompt in prompts.deep_text:
        nn.init.normal_(prompt, std=0.01)


@METHODS.register("mdpr_maple")
class MDPRMaPLe(MDPR, MaPLe):
    """MDPR on MaPLe: knowledge-base routing + CLA semantic head, from a KB file (Jia et al., 2025)."""

    Config = MDPRMaPLeConfig
    card = CARD

    def __init__(self, backbone, data, cfg: MDPRMaPLeConfig):
        super().__init__(backbone, data, cfg)
        if cfg.init == "mdpr":
            draw_like_mdpr(self.prompt_learner)


@METHODS.register("mdpr_maple_offlinekb")
class MDPRMaPLeOfflineKB(MDPRMaPLe):
    """MDPR on MaPLe with the offline template knowledge base (no LLM; not the paper's method)."""

    offline_kb = True
    card = OFFLINE_CARD
