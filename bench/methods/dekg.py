"""DeKg on TCP (Li, Cheng, Han, Song, ICLR 2025): the DeKg CPT compares against (spec_cpt_mdpr_baselines.md §3.0, D1).

Follows ``cnunlp/DeKg:trainers/DeKg_TCP.py`` (``PromptLearner``, ``CustomCLIP``) with ``trainers/loss.py``
(``HSICLoss``) and ``trainers/clip_text/model.py`` (``ResidualAttentionBlock_MaPLe``, layers [8], weight 1) at
b8f2f1c8247c427042a0ed1ecaf450925fe50ed0.  The model is TCP's (``bench/methods/tcp.py``: 4 random context tokens,
the class-aware tokens ``τ_c = TKE(t̂_c)`` replacing positions 1..4 at the input of text block 8, the same
two template tables); training adds the HSIC term of paper Eq. 5 on the *un-normalised* text features:

    L = CE(s · cos(f(x), t), y) + λ · (1 − mean_c cos(t_c, t̂_c)) + µ · HSIC(t, t̂)      (bench.api.hsic)

with λ = ``kg_weight`` 8 (DeKg_TCP reads it from W, unlike TCP's literal 8; spec §17.3) and µ =
``hsic_weight`` 6 (``scripts/run.sh``; spec §3.3, D5), over all classes of the classifier.  New classes get
their own ``t̂`` and so their own class tokens; the KG and HSIC terms are training-only.
Not copied (spec §3.6, §17.1): the per-step ``thop.profile`` call (an extra eval-mode forward that draws
``randn(1, 3, 224, 224)`` from the global RNG) and the second CLIP that computes ``t̂``.
Choices: 100 epochs, the DeKg-specific config (``dekg@ep50``: TCP's 50, 25 for ImageNet/SUN397, spec D4);
Adam at torch's default eps 1e-8 (Dassl's; DeKg's README has no eps patch, unlike TCP's 1e-3, spec silent).
``dekg@quirk_kg_twice`` is the loss before the fix of b8f2f1c (2025-05-15), ``CE + λ·L_kg + µ·L_kg``: the
HSIC term computed but unused, i.e. TCP with KG weight λ + µ (spec §3.6, B4).

Trainable at ViT-B/16: ``2,048 + 65,664 + 264,192 = 331,904`` parameters (the prompt learner), any class count.

    bench run --protocol smoke_b2n --method dekg dekg_kgcoop      # the smoke protocols set insert_layer 1
    bench run --protocol 'b2n_cpt/eurosat/tau0.25' --method dekg --data-root $DATA
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F

from bench.api import METHODS, MethodCard, Recipe

from .coop import CARD as COOP_CARD
from .cpt_tables import THIRD_PARTY, reported_rows
from .dekg_kgcoop import dekg_loss
from .kgcoop import kg_loss
from .tcp import TCP, TCP_B2N, TCPConfig, encode_with_class_tokens

DEKG_TCP_CODE = "cnunlp/DeKg:trainers/DeKg_TCP.py@b8f2f1c8247c427042a0ed1ecaf450925fe50ed0"
DEKG_TCP_SPEC = ("spec_cpt_mdpr_baselines.md §3 (D1-D5, B1-B4), §17; precision: official pure fp16, here fp32 + "
                 "autocast, t̂ in fp32 from the shared backbone")
DEKG_PAPER = ("Li, Cheng, Han, Song. Divergence-enhanced Knowledge-guided Context Optimization for Visual-Language "
              "Prompt Tuning. ICLR 2025; on TCP")


@dataclass
class DeKgConfig(TCPConfig):
    hsic_weight: float = field(default=6.0, metadata={"min": 0})  # µ: LOSS.WEIGHT of the scripts


class DeKgOutput(NamedTuple):
    """Training-mode output: TCP's logits and normalised text features, and the raw ones HSIC takes."""

    logits: torch.Tensor  # [B, C]
    text: torch.Tensor  # [C, d], normalised
    raw: torch.Tensor  # [C, d], before normalisation


# DeKg configs/trainers/DeKg_TCP/vit_b16_ep100_ctxv1.yaml: Adam 0.002 (Dassl's: L2 wd 5e-4, eps 1e-8), batch 32,
# 100 epochs, 1 constant warm-up epoch at 1e-5, cosine, CTX_INIT False; W 8, LOSS.WEIGHT 6 (scripts/run.sh).
DEKG_B2N = dict(options={**TCP_B2N["options"], "hsic_weight": 6.0},
                train={"optimizer": "adam", "lr": 0.002, "weight_decay": 5e-4, "batch_size": 32, "epochs": 100})
DEKG_SOURCE = "DeKg configs/trainers/DeKg_TCP/vit_b16_ep100_ctxv1.yaml + scripts/run.sh (W 8, LOSS.WEIGHT 6)"


def dekg_recipes(note: str = "", **b2n) -> dict:
    """DeKg-on-TCP's recipe per family (spec §3.4, §11); ``b2n`` replaces parts of :data:`DEKG_B2N`."""
    b2n = {**DEKG_B2N, **b2n}
    return {
        "b2n_lt16": Recipe(source=f"{DEKG_SOURCE}; project choice: CPT gives no settings (spec B19){note}", **b2n),
        "b2n_lt100": Recipe(source=f"{DEKG_SOURCE}; project choice: not run by LAMP{note}", **b2n),
        **{family: Recipe(source=f"{DEKG_SOURCE} on the ImageNet source; project choice: the repo has no "
                                 f"cross-dataset config (spec §3.4){note}", **b2n)
           for family in ("xd_lt100", "xd_lt16")},
        "lt": Recipe(source=f"project choice: CoOp's lt recipe (MDPR App. A.1.2) with DeKg's options{note}",
                     options=dict(b2n["options"]), train=dict(COOP_CARD.recipes["lt"].train)),
    }


CARD = MethodCard(label="DeKg", paper=DEKG_PAPER, code=DEKG_TCP_CODE, spec=DEKG_TCP_SPEC, recipes=dekg_recipes(),
                  reported=reported_rows("dekg", f"{THIRD_PARTY}; its per-dataset HMs fit DeKg on TCP"))


@METHODS.register("dekg")
class DeKg(TCP):
    """DeKg: TCP plus an HSIC term that decorrelates learned and hand-crafted class embeddings (Li et al., 2025)."""

    Config = DeKgConfig
    card = CARD

    def forward(self, images: torch.Tensor):
        """Logits ``[B, C]``; in training a :class:`DeKgOutput`."""
        if not self.training:
            return super().forward(images)
        learner = self.prompt_learner
        raw = encode_with_class_tokens(self.backbone, learner.text(), learner.text.tokens, learner.class_tokens(),
                                       self.cfg.insert_layer, self.cfg.tke_fusion, normalize=False)
        text = F.normalize(raw, dim=-1)  # what TCP's text_features returns, bit for bit
        feats = self.image_features(images)
        return DeKgOutput(self.backbone.logit_scale * feats @ text.t().to(feats.dtype), text, raw)

    def loss(self, output: DeKgOutput, labels: torch.Tensor) -> torch.Tensor:
        # the raw rows, as DeKg_TCP.py:259 (the KgCoOp variant normalises them first, spec D3)
        return dekg_loss(super().loss(output, labels), output.raw, self.prompt_learner.ori, self.cfg.hsic_weight)


EP50_CARD = MethodCard(
    label="DeKg (50 epochs)", paper=DEKG_PAPER, code=DEKG_TCP_CODE,
    spec=f"{DEKG_TCP_SPEC}; D4/B3 variant: TCP's epochs (50; 25 for ImageNet and SUN397, TCP's train.py)",
    recipes=dekg_recipes(", TCP's 50 epochs (spec D4 variant)", train={**DEKG_B2N["train"], "epochs": 50},
                         by_dataset=TCP_B2N["by_dataset"]))


@METHODS.register("dekg@ep50")
class DeKgEp50(DeKg):
    """DeKg on TCP trained for TCP's 50 epochs (25 on ImageNet and SUN397) instead of DeKg's 100 (spec D4)."""

    card = EP50_CARD


KG_TWICE_CARD = MethodCard(
    label="DeKg (pre-b8f2f1c loss)", paper=DEKG_PAPER,
    code="cnunlp/DeKg:trainers/DeKg_TCP.py@2086c88b5bd621711d506e2b05e831c5fbc816f3",  # parent of b8f2f1c
    spec=f"{DEKG_TCP_SPEC}; §3.6/B4 quirk: CE + λ·L_kg + µ·L_kg, the HSIC term unused (TCP with KG weight λ + µ)",
    recipes=dekg_recipes(", loss before the 2025-05-15 fix (spec B4 quirk)"))


@METHODS.register("dekg@quirk_kg_twice")
class DeKgKgTwice(DeKg):
    """DeKg on TCP with the loss of clones before 2025-05-15: the KG term twice, HSIC unused (spec B4)."""

    card = KG_TWICE_CARD

    def loss(self, output: DeKgOutput, labels: torch.Tensor) -> torch.Tensor:
        return TCP.loss(self, output, labels) + self.cfg.hsic_weight * kg_loss(output.text, self.prompt_learner.ori)
