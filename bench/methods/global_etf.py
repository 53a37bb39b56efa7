"""Global-ETF: an NPT-style baseline, CPT with one cluster and no shift term (methods_spec §10).

NPT (Zhu et al., KDD 2024) makes the text prototypes collapse to one simplex ETF and pulls the
image features onto them; no code or full text of it was found, so its formulas are **unverified**.
As the spec recommends, this entry is not called NPT: it is CPT's "Global-ETF PT" (CPT Fig. 4), IVLP
trained with::

    L = CE + λ_ETF · ‖norm(G)ᵀ norm(G) − G*_K‖_F² + λ_CC · L_CC      (K = all training classes)

with the ETF and compactness terms of :mod:`methods.cpt` (no anchors, no clustering).  The NPT rows
CPT's Tables 2-4 print are on NPT's own reported-only card (``npt``, :mod:`methods.reported_only`):
this stand-in is not NPT, so its rows show no paper numbers.

    bench run --protocol 'b2n_cpt/dtd/tau0.25' --method global_etf --set global_etf.lambda_etf=0.5
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bench.api import METHODS, MethodCard, Recipe

from .cpt import RECIPES, WEIGHT, ClusterETFPrompts
from .ivlp import IVLPConfig

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
