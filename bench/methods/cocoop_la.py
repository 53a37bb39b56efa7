"""CoCoOp+LA: CoCoOp trained with the logit-adjusted loss (LAMP Tables 3-4's "CoCoOp+LA" baseline).

CoCoOp's meta-network prompts (``bench/methods/cocoop.py``) trained on ``CE(z + tau * log pi, y)`` with the prior
of the exact training subset, prediction on the raw logits (methods_spec §2; the mixin of
``bench/methods/coop_la.py``).  LAMP reports it on its cross-dataset and domain-generalisation tables only.

    bench run --protocol smoke_xd_dg --method cocoop_la --set cocoop_la.tau=1
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.api import METHODS, MethodCard, Recipe

from .cocoop import CARD as COCOOP_CARD, CoCoOp, CoCoOpConfig
from .coop_la import LAOptions, LogitAdjusted
from .lamp_tables import BASELINE, b2n_reported, xd_dg_reported


@dataclass
class CoCoOpLAConfig(CoCoOpConfig, LAOptions):
    pass


CARD = MethodCard(
    label="CoCoOp+LA",
    paper="Menon et al. Long-tail learning via logit adjustment. ICLR 2021; on CoCoOp (Zhou et al., CVPR 2022)",
    code="google-research/google-research:logit_adjustment/utils.py@1d4d2f1aa6f2883a790d2ae46a6ee8ab150d8f31",
    spec="methods_spec §2, §4",
    recipes={family: Recipe(source=f"{recipe.source} + LA tau 1 (LAMP Tables 3-4 '+LA')",
                            options=dict(recipe.options), train=dict(recipe.train))
             for family, recipe in COCOOP_CARD.recipes.items()},
    reported={**b2n_reported("cocoop_la", BASELINE), "xd_dg_lamp/imb100": xd_dg_reported("cocoop_la")},
)


@METHODS.register("cocoop_la")
class CoCoOpLA(LogitAdjusted, CoCoOp):
    """CoCoOp+LA: CoCoOp trained with the logit-adjusted loss, tau = 1 (LAMP's baseline)."""

    Config = CoCoOpLAConfig
    card = CARD
