"""Systems the seed papers compare against that this suite does not run yet: a card each, with the
citation, the official code and the numbers the seed papers print for it, so that a report of a
seed table shows every printed row (as a paper row, never ranked or tested). ``bench list methods``
marks them "reported only"; ``bench run`` refuses them by name and ``--method all`` never includes
them. A port registered under the same name in ``METHODS`` takes over the name, and the same report
rows then show our numbers beside the paper's::

    from bench.api import REPORTED
    REPORTED.get("npt").card.reported["b2n_cpt/eurosat/tau1"].metrics   # {"hm": 82.12, ...}
"""
from __future__ import annotations

from bench.api import REPORTED, MethodCard

from .cpt_tables import THIRD_PARTY, reported_rows
from .mdpr_coop import mdpr_lt


class ReportedOnly:
    """A card without a method: what a report needs to print a system's published numbers."""

    card: MethodCard


# CPT Tables 2-4 (long-tailed base-to-new at tau = 1, 0.25, 0.06; cross-dataset; domain generalisation).
@REPORTED.register("coprompt")
class CoPrompt(ReportedOnly):
    """CoPrompt: consistency between trained and frozen encoders, with adapters and LLM descriptions; reported only."""

    card = MethodCard(
        paper="Roy, Etemad. Consistency-guided Prompt Learning for Vision-Language Models. ICLR 2024",
        code="ShuvenduRoy/CoPrompt:trainers/coprompt.py@a2a6c12e3622cfe4b3a127f4ba0c4f3eb841418c",
        label="CoPrompt", spec="spec_cpt_mdpr_baselines.md §4",
        reported=reported_rows("coprompt", THIRD_PARTY))


@REPORTED.register("npt")
class NPT(ReportedOnly):
    """NPT: text and image features anchored to one simplex ETF (Zhu et al., 2024); reported only."""

    card = MethodCard(
        paper="Zhu et al. Neural Collapse Anchored Prompt Tuning for Generalizable Vision-Language Models. "
              "KDD 2024 (arXiv:2306.15955)",
        code="no public code found (spec_cpt_mdpr_baselines.md §10); global_etf is this suite's NPT-style "
             "stand-in, not NPT",
        label="NPT", spec="spec_cpt_mdpr_baselines.md §10",
        reported=reported_rows("npt", THIRD_PARTY))


@REPORTED.register("dpc")
class DPC(ReportedOnly):
    """DPC: a parallel prompt tuned on hard negatives beside a frozen backbone prompt (Li et al., 2025); reported only."""

    card = MethodCard(
        paper="Li, Wang, Wang, Jiang, Peng, Long. DPC: Dual-Prompt Collaboration for Tuning Vision-Language "
              "Models. CVPR 2025",
        code="JREion/DPC:trainers/sple_coop.py@01e6b599d6515c38f4d723a8ea844ac4d1abfadd",
        label="DPC", spec="spec_cpt_mdpr_baselines.md §5",
        reported=reported_rows("dpc", f"{THIRD_PARTY}; CPT does not name DPC's backbone prompt, its means fit "
                                      "PromptSRC+DPC"))


# MDPR Tables 2-3 (CIFAR-100-LT at IR 10/50/100, ImageNet-LT, Places-LT; All/Many/Medium/Few).
MDPR_RECIPE = "MDPR's run with its common recipe (AdamW 1e-3, 20 epochs, batch 128)"


def mdpr_rows(text: str, note: str = MDPR_RECIPE) -> dict:
    """Reported entries from MDPR's printed cells, "<protocol>:all/many/medium[/few]" separated by spaces."""
    out = {}
    for cell in text.split():
        protocol, values = cell.split(":")
        table = "MDPR Table 2" if protocol.startswith("cifar") else "MDPR Table 3"
        out[protocol] = mdpr_lt(*map(float, values.split("/")), table=table, note=note)
    return out


@REPORTED.register("cprfl")
class CPRFL(ReportedOnly):
    """CPRL (CPRFL): CLIP category prompts refining ResNet-101 features, multi-label (Yan et al., 2024); reported only."""

    card = MethodCard(
        paper="Yan et al. Category-Prompt Refined Feature Learning for Long-Tailed Multi-Label Image "
              "Classification. ACM MM 2024 (arXiv:2408.08125)",
        code="jiexuanyan/CPRFL:src/models/build_model_TF.py@10b5b7c9d91d421d86175b8ccf07f280c1e94cac",
        label="CPRL", spec="spec_cpt_mdpr_baselines.md §9",
        reported=mdpr_rows("cifar100_lt_ir10:81.75/84.97/74.58 cifar100_lt_ir50:71.16/86.61/65.22/49.50 "
                           "cifar100_lt_ir100:68.20/88.74/71.97/39.83",
                           f"{MDPR_RECIPE}; not ViT-B/16 (MDPR says so): a trained ResNet-101 with CLIP class "
                           "embeddings, a multi-label method, so not comparable with the other rows"))
