"""MMA+LA: MMA trained with the logit-adjusted loss (LAMP's "+LA" baseline), and PromptLT's reading of it.

``mma_la``: MMA's adapters (``bench/methods/mma.py``) trained on ``CE(z + tau * log pi, y)`` with the prior of
the exact training subset over the training classes only; prediction uses the raw logits (LAMP App. C,
methods_spec §2, spec_lamp_baselines.md §5.3).  ``mma_la@promptlt``: what
``asaxuc/PromptLT:trainers/mmadapter.py`` (very likely LAMP's code) runs instead: it builds an LA criterion
and never calls it, training plain cross-entropy over the base **and new** class names at batch 4
(spec §2.3, B18).  The new names act as negatives during training, so it is class-name transductive;
at test each label space is classified among its own classes (PromptLT slices its base ∪ new logits,
the same numbers, since MMA's class texts do not interact).  Neither is provably what LAMP ran.

    bench run --protocol smoke_b2n --method mma_la mma_la@promptlt --set mma_la.tau=0.5
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

from bench.api import METHODS, ClassInfo, MethodCard, Recipe

from .coop_la import LAOptions, LogitAdjusted
from .lamp_tables import b2n_reported, table5, xd_dg_reported
from .mma import ADAPTERS, MMA, SGD, SPEC, MMAConfig, recipes

PROMPTLT_CODE = "asaxuc/PromptLT:trainers/mmadapter.py@54593992449d75c06d960fa628ae504b45267bc0"
LA_PAPER = ("Yang, Zhang, Wang, Xie. MMA: Multi-Modal Adapter for Vision-Language Models. CVPR 2024; with the "
            "logit-adjusted loss of Menon et al., ICLR 2021")
PROMPTLT_PAPER = ("Yang, Zhang, Wang, Xie. MMA: Multi-Modal Adapter for Vision-Language Models. CVPR 2024; as "
                  "asaxuc/PromptLT trains it for LAMP's tables. Class-name transductive: uses the new class names "
                  "in training")
LAMP_LA = ("LAMP's run with the logit-adjusted loss (App. C), mean of 5 runs; PromptLT's trainer uses plain "
           "cross-entropy over base and new names instead (mma_la@promptlt, spec_lamp_baselines.md B18)")


@dataclass
class MMALAConfig(MMAConfig, LAOptions):
    pass


CARD = MethodCard(
    label="MMA+LA",
    paper=LA_PAPER,
    code="ZjjConan/Multi-Modal-Adapter:trainers/mmadapter.py@547ee345a4dc5d60d43d3aa54e8eee50a107f591",
    spec=f"{SPEC}; methods_spec §2 (LA)",
    recipes=recipes(" + LA tau 1"),
    reported={**b2n_reported("mma_la", LAMP_LA), "xd_dg_lamp/imb100": xd_dg_reported("mma_la")},
    ablations=table5(78.95, 73.50, 674, 0.90, "MMA", ours="674,560"),  # spec B22: Table 5's "MMA" is MMA+LA
)


@METHODS.register("mma_la")
class MMALA(LogitAdjusted, MMA):
    """MMA+LA: MMA trained with the logit-adjusted loss, tau = 1 (LAMP's baseline)."""

    Config = MMALAConfig
    card = CARD


PROMPTLT_CONFIG = "asaxuc/PromptLT configs/trainers/MultiModalAdapter/vit_b16_ep5.yaml (batch 4)"
PROMPTLT_CARD = MethodCard(
    label="MMA+LA (PromptLT)",
    paper=PROMPTLT_PAPER,
    code=PROMPTLT_CODE,
    spec=f"{SPEC}; §2.3 and B18 (plain cross-entropy over base and new names)",
    recipes={
        # scripts/mma/base2new_imb_train.sh runs this config for every dataset, ImageNet included
        "b2n_lt100": Recipe(source=f"{PROMPTLT_CONFIG}, every dataset (scripts/mma/base2new_imb_train.sh)",
                            options=dict(ADAPTERS), train={**SGD, "batch_size": 4}),
        "b2n_lt16": Recipe(source=f"{PROMPTLT_CONFIG} (project choice: as b2n_lt100)", options=dict(ADAPTERS),
                           train={**SGD, "batch_size": 4}),
        "lt": Recipe(source=f"{PROMPTLT_CONFIG} (project choice; no new classes there: mma at batch 4)",
                     options=dict(ADAPTERS), train={**SGD, "batch_size": 4}),
    },
)


@METHODS.register("mma_la@promptlt")
class MMAPromptLT(MMA):
    """MMA+LA as PromptLT trains it: plain CE over base and new class names (class-name transductive)."""

    Config = MMAConfig
    card = PROMPTLT_CARD

    def prompt_names(self, info: ClassInfo) -> List[str]:
        extra = list(self.data.new_classnames) if info == self.data else []
        return list(info.classnames) + extra

    def record_fields(self) -> dict:
        return {"new_classes_in_training": len(self.data.new_classnames)}
