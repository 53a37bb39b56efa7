"""Global-ETF: an NPT-style baseline, CPT with one cluster and no shift term (methods_spec §10).

NPT (Zhu et al., KDD 2024) makes the text prototypes collapse to one simplex ETF and pulls the
image features onto them; no code or full text of it was found, so its formulas are **unverified**.
As the spec recommends, this entry is not called NPT: it is CPT's "Global-ETF PT" (CPT Fig. 4), IVLP
trained with::

    L = CE + λ_ETF · ‖norm(G)ᵀ norm(G) − G*_K‖_F² + λ_CC · L_CC      (K = all training classes)

with the ETF and compactness terms of :mod:`methods.cpt` (no anchors, no clustering).  The NPT rows
printed in CPT's Tables 2-4 are kept as reference numbers; CPT's authors produced them with a setup
we cannot see.

    bench run --protocol 'b2n_cpt/dtd/tau0.25' --method global_etf --set global_etf.lambda_etf=0.5
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bench.api import METHODS, MethodCard, Recipe

from .cpt import RECIPES, WEIGHT, ClusterETFPrompts, reported_rows
from .ivlp import IVLPConfig

# NPT rows of CPT Tables 2, 3 and 4 (same layout as methods.cpt.CPT_B2N / CPT_XD / CPT_DG).
NPT_B2N = {"tau1": (73.82, 96.23, 96.24, 72.49, 82.37, 91.67, 36.46, 79.76, 68.88, 82.12, 81.42, 78.31),
           "tau0.25": (72.22, 95.66, 96.20, 70.89, 78.58, 90.23, 29.86, 76.88, 57.16, 58.48, 76.65, 72.98),
           "tau0.06": (70.89, 95.64, 94.56, 70.58, 74.46, 90.20, 27.72, 75.89, 56.98, 57.47, 74.95, 71.76)}
NPT_XD = {"tau1": (70.70, 94.50, 90.64, 66.73, 72.62, 86.21, 25.23, 68.37, 47.63, 50.25, 68.87, 67.11),
          "tau0.25": (69.40, 93.60, 90.40, 65.95, 72.33, 86.19, 22.78, 66.89, 46.05, 49.67, 67.12, 66.10),
          "tau0.06": (68.90, 93.31, 89.93, 65.28, 71.77, 86.00, 21.51, 66.07, 44.97, 48.17, 66.20, 65.32)}
NPT_DG = {"tau1": (70.70, 64.23, 48.10, 49.70, 76.89, 59.73),
          "tau0.25": (69.40, 63.10, 47.83, 49.10, 76.20, 59.06),
          "tau0.06": (68.70, 62.83, 47.53, 48.07, 74.70, 58.28)}
NPT_NOTE = ("NPT as run by CPT's authors (setup not published); our Global ETF is an unverified NPT-style "
            "stand-in, not NPT")


@dataclass
class GlobalETFConfig(IVLPConfig):
    lambda_etf: float = field(default=0.25, metadata=WEIGHT)
    lambda_cc: float = field(default=0.15, metadata=WEIGHT)


CARD = MethodCard(
    label="Global ETF",
    paper="NPT-style global ETF (Zhu et al., Neural-collapse-anchored Prompt Tuning, KDD 2024): formula "
          "unverified, NPT-style, no primary source (no public code or full text found); defined as CPT "
          "(arXiv 2605.11939) with one cluster and no RS term, CPT Fig. 4 'Global-ETF PT'",
    code="muzairkhattak/PromptSRC:trainers/independentVL.py@bb95c77b634d63488f2cad81ff4a72d53bdd06d5",
    spec="methods_spec §10, §13 A30",
    recipes={family: Recipe(source=f"project choice, as CPT (spec §11): {recipe.source}",
                            options=dict(recipe.options), train=dict(recipe.train))
             for family, recipe in RECIPES.items()},
    reported=reported_rows(NPT_B2N, NPT_XD, NPT_DG, NPT_NOTE),
)


@METHODS.register("global_etf")
class GlobalETF(ClusterETFPrompts):
    """Global-ETF (NPT-style, unverified): IVLP + one simplex ETF over all classes + class compactness."""

    Config = GlobalETFConfig
    card = CARD

    def __init__(self, backbone, data, cfg: GlobalETFConfig):
        super().__init__(backbone, data, cfg)
        self.use_partition([0] * len(data.classnames))
        self.weights = (cfg.lambda_etf, cfg.lambda_cc, 0.0)

    def record_fields(self) -> dict:
        return {"clusters": self.partition, "num_clusters": 1}
