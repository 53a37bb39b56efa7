"""CoOp+LA: CoOp trained with the logit-adjusted loss (Menon et al., ICLR 2021).

The prompt learner is CoOp's (``bench/methods/coop.py``); training minimises
``CE(z + tau * log pi, y)`` with ``pi`` the class prior of the exact training
subset (``bench.model.losses``, methods_spec §2 and §4), and prediction uses the raw
logits ``z``.  LAMP's tables call it "CoOp+LA"; over base-to-new protocols the
prior covers the training (base) classes only.  The prior is saved in the result.
:class:`LogitAdjusted` gives any method this loss (``maple_la`` uses it too).

    bench run --protocol smoke --method coop_la --set coop_la.tau=1.5
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.api import METHODS, MethodCard, Recipe, la_loss, la_offsets

from .coop import B2N_CTXV1, CARD as COOP_CARD, CoOp, CoOpConfig
from .lamp_tables import BASELINE, b2n_reported, xd_dg_reported


@dataclass
class LAOptions:
    tau: float = field(default=1.0, metadata={"min": 0})  # temperature of the prior: offsets tau * log(pi)


class LogitAdjusted:
    """Mixin, listed before a Method: LA loss over the training classes, raw logits at prediction.
    Its Config must have ``tau`` (:class:`LAOptions`)."""

    def __init__(self, backbone, data, cfg):
        super().__init__(backbone, data, cfg)
        self.register_buffer("offsets", la_offsets(data.train_counts, tau=cfg.tau), persistent=False)
        self.prior_counts = list(data.train_counts)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return la_loss(logits, labels, self.offsets)

    def record_fields(self) -> dict:
        return {"la_prior_counts": self.prior_counts, "la_offsets": self.offsets.tolist()}


@dataclass
class CoOpLAConfig(CoOpConfig, LAOptions):
    pass


CARD = MethodCard(
    label="CoOp+LA",
    paper="Menon et al. Long-tail learning via logit adjustment. ICLR 2021; on CoOp (Zhou et al., IJCV 2022)",
    code="google-research/google-research:logit_adjustment/utils.py@1d4d2f1aa6f2883a790d2ae46a6ee8ab150d8f31",
    spec="methods_spec §2, §4",
    recipes={
        "lt": Recipe(source="as CoOp's lt recipe (MDPR App. A.1.2) + LA tau 1 (project choice, spec §11)",
                     options=dict(COOP_CARD.recipes["lt"].options), train=dict(COOP_CARD.recipes["lt"].train)),
        "b2n_lt100": Recipe(source="CoOp vit_b16_ctxv1 + LA tau 1 (LAMP §4.1 '+LA')", **B2N_CTXV1),
        "b2n_lt16": Recipe(source="CoOp vit_b16_ctxv1 + LA tau 1 (as LAMP's, spec §11)", **B2N_CTXV1),
        **{family: Recipe(source="CoOp vit_b16_ep50_ctxv1 (xd_train.sh) + LA tau 1 (LAMP Tables 3-4)",
                          options=dict(COOP_CARD.recipes[family].options), train=dict(COOP_CARD.recipes[family].train))
           for family in ("xd_lt100", "xd_lt16")},
    },
    reported={**b2n_reported("coop_la", BASELINE), "xd_dg_lamp/imb100": xd_dg_reported("coop_la")},
)


@METHODS.register("coop_la")
class CoOpLA(LogitAdjusted, CoOp):
    """CoOp+LA: CoOp trained with the logit-adjusted loss, tau = 1 (Menon et al., 2021)."""

    Config = CoOpLAConfig
    card = CARD
