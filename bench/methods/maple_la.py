"""MaPLe+LA: MaPLe trained with the logit-adjusted loss (LAMP's "+LA" baseline).

MaPLe's prompts (``bench/methods/maple.py``) trained on ``CE(z + tau * log pi, y)`` with the prior of the
exact training subset over the training classes only; prediction uses the raw logits (methods_spec §2, §5).
``asaxuc/PromptLT:trainers/maple.py`` builds the classifier over base and new classes with zero counts
for the new ones, which masks them with -inf: the same as LA over the base classes.

    bench run --protocol smoke --method maple_la --set maple_la.tau=0.5
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.api import METHODS, MethodCard, Recipe

from .coop_la import LAOptions, LogitAdjusted
from .lamp_tables import BASELINE, b2n_reported, table5, xd_dg_reported
from .maple import CARD as MAPLE_CARD, MaPLe, MaPLeConfig


@dataclass
class MaPLeLAConfig(MaPLeConfig, LAOptions):
    pass


def with_la(recipe: Recipe, source: str) -> Recipe:
    return Recipe(source=source, options=dict(recipe.options), train=dict(recipe.train))


CARD = MethodCard(
    label="MaPLe+LA",
    paper="Menon et al. Long-tail learning via logit adjustment. ICLR 2021; on MaPLe (Khattak et al., CVPR 2023)",
    code="asaxuc/PromptLT:trainers/maple.py@54593992449d75c06d960fa628ae504b45267bc0",
    spec="methods_spec §2, §5",
    recipes={
        "lt": with_la(MAPLE_CARD.recipes["lt"], "as MaPLe's lt recipe (MDPR App. A.1.2) + LA tau 1 (spec §11)"),
        "b2n_lt100": with_la(MAPLE_CARD.recipes["b2n_lt100"], "MaPLe vit_b16_c2_ep5_batch4_2ctx + LA tau 1 (LAMP)"),
        "b2n_lt16": with_la(MAPLE_CARD.recipes["b2n_lt16"], "MaPLe vit_b16_c2_ep5_batch4_2ctx + LA tau 1 (spec §11)"),
        **{family: with_la(MAPLE_CARD.recipes[family], "MaPLe cross_datasets config + LA tau 1 (LAMP Tables 3-4)")
           for family in ("xd_lt100", "xd_lt16")},
    },
    reported={**b2n_reported("maple_la", BASELINE), "xd_dg_lamp/imb100": xd_dg_reported("maple_la")},
    ablations=table5(78.56, 73.31, 3555, 1.47, "MaPLe"),
)


@METHODS.register("maple_la")
class MaPLeLA(LogitAdjusted, MaPLe):
    """MaPLe+LA: MaPLe trained with the logit-adjusted loss, tau = 1 (LAMP's baseline)."""

    Config = MaPLeLAConfig
    card = CARD
