"""MDPR on the MaPLe pathway: ``mdpr_maple`` (a knowledge-base file) and ``mdpr_maple_offlinekb``.

MaPLe's coupled prompts (``methods/maple.py``) give the prompted image feature ``f`` (the router's query,
with gradient) and ``ŷ_cb``; MDPR's router, losses and fusion are in ``methods/mdpr.py`` (methods_spec §7).
MDPR-MaPLe loss weights (App. A.1.4): λ = (1, 1.0, 0.05, 0.005), T = 2; n_ctx 2 (paper; the code's
default is 16, spec A5).  Trainable at ViT-B/16: MaPLe 3,555,072 + 1,116,288 + the logit scale
(paper Table 6: 4.7 M).

    bench run --protocol smoke --method mdpr_maple_offlinekb
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.method import MethodCard
from bench.registry import METHODS

from .maple import CARD as MAPLE_CARD, MaPLe, MaPLeConfig
from .mdpr import MDPR, MDPROptions
from .mdpr_coop import CODE, mdpr_lt, recipes

MAPLE_WEIGHTS = {"lambda_sem": 1.0, "lambda_pa": 0.05, "lambda_ka": 0.005, "temperature": 2.0}


@dataclass
class MDPRMaPLeConfig(MaPLeConfig, MDPROptions):
    lambda_sem: float = dataclasses.field(default=1.0, metadata={"min": 0})
    lambda_ka: float = dataclasses.field(default=0.005, metadata={"min": 0})

    def validate(self, where: str) -> None:
        MaPLeConfig.validate(self, where)
        MDPROptions.validate(self, where)


CARD = MethodCard(
    paper="Jia et al. MDPR: an LLM knowledge base with multi-dimensional dynamic prompt routing for long-tailed "
          "prompt tuning of CLIP. Findings of EMNLP 2025; on MaPLe (Khattak et al., CVPR 2023)",
    code=CODE,
    spec="methods_spec §7, §13 A1-A12",
    recipes=recipes(MAPLE_CARD, MAPLE_WEIGHTS, "MaPLe"),
    reported={
        "cifar100_lt_ir10": mdpr_lt(84.73, 86.32, 81.19),
        "cifar100_lt_ir50": mdpr_lt(81.38, 88.68, 76.90, 74.94),
        "cifar100_lt_ir100": mdpr_lt(79.25, 87.60, 81.26, 67.17),
        "imagenet_lt": mdpr_lt(75.57, 79.42, 74.02, 70.04, "MDPR Table 3"),
        "places_lt": mdpr_lt(50.94, 50.32, 51.42, 50.99, "MDPR Table 3"),
    },
)


OFFLINE_CARD = MethodCard(
    paper="MDPR (Jia et al., Findings of EMNLP 2025) with an offline template knowledge base instead of the "
          "paper's LLM one; on MaPLe (Khattak et al., CVPR 2023)",
    code=CARD.code, spec=CARD.spec, recipes=CARD.recipes)


@METHODS.register("mdpr_maple")
class MDPRMaPLe(MDPR, MaPLe):
    """MDPR on MaPLe: knowledge-base routing + CLA semantic head, from a KB file (Jia et al., 2025)."""

    Config = MDPRMaPLeConfig
    card = CARD


@METHODS.register("mdpr_maple_offlinekb")
class MDPRMaPLeOfflineKB(MDPRMaPLe):
    """MDPR on MaPLe with the offline template knowledge base (no LLM; not the paper's method)."""

    offline_kb = True
    card = OFFLINE_CARD


# Figure 3 / §4.5 text (MaPLe base), for reports: Places-LT Few of MaPLe, + the semantic head
# (``--set mdpr_maple.lambda_pa=0 --set mdpr_maple.lambda_ka=0``), + both regularisers (the default).
FIGURE3 = [{"protocol": "places_lt", "metric": "few", "settings": settings, "value": value}
           for settings, value in [(None, 28.73), ({"lambda_pa": 0.0, "lambda_ka": 0.0}, 48.39), ({}, 50.99)]] + \
          [{"protocol": "imagenet_lt", "metric": "many", "settings": {}, "value": 79.42}]
