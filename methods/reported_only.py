"""Systems the seed papers compare against that this suite does not run yet: a card each, with the
citation, the official code and the numbers the seed papers print for it, so that a report of a
seed table shows every printed row (as a paper row, never ranked or tested). ``bench list methods``
marks them "reported only"; ``bench run`` refuses them by name and ``--method all`` never includes
them. A port registered under the same name in ``METHODS`` takes over the name, and the same report
rows then show our numbers beside the paper's::

    from bench.api import REPORTED
    REPORTED.get("tcp_la").card.reported["b2n_lamp/eurosat/imb10"].metrics   # {"hm": 80.94, ...}
"""
from __future__ import annotations

from bench.api import REPORTED, MethodCard

from .lamp_tables import b2n_reported, table5, xd_dg_reported

# LAMP (App. C) trains TCP and MMA "+LA" with the logit-adjusted loss (Menon et al.'s tau = 1); its code for
# the long-tailed base-to-new runs of both is asaxuc/PromptLT (spec_lamp_baselines.md §1).
LAMP_LA = "LAMP's run with the logit-adjusted loss (App. C), mean of 5 runs"
PROMPTLT = "asaxuc/PromptLT@54593992449d75c06d960fa628ae504b45267bc0 (LAMP's TCP/MMA long-tailed trainers)"


class ReportedOnly:
    """A card without a method: what a report needs to print a system's published numbers."""

    card: MethodCard


@REPORTED.register("lfa")
class LFA(ReportedOnly):
    """LFA: a linear map of frozen CLIP features, closed-form then re-ranked (Ouali et al., 2023); reported only."""

    card = MethodCard(
        paper="Ouali, Bulat, Martinez, Tzimiropoulos. Black Box Few-Shot Adaptation for Vision-Language "
              "Models. ICCV 2023 (arXiv:2304.01752)",
        code="saic-fi/LFA:feature_alignment.py@2ee3bba3e45bbe03c7b7c6c0b770e1b2ec7e781f",
        label="LFA", spec="spec_lamp_baselines.md §6",
        reported=b2n_reported("lfa", "LAMP's run, mean of 5 runs; LAMP compares LFA on these two benchmarks only"))


@REPORTED.register("tcp_la")
class TCPLA(ReportedOnly):
    """TCP+LA: class-aware text tokens from the class embeddings (Yao et al., 2024), logit-adjusted; reported only."""

    card = MethodCard(
        paper="Yao, Zhang, Xu. TCP: Textual-based Class-aware Prompt tuning for Visual-Language Model. "
              "CVPR 2024 (arXiv:2311.18231)",
        code=f"htyao89/Textual-based_Class-aware_prompt_tuning:trainers/tcp.py@bd97bec6bd4901baaf318e9e8f073f618d12066e; "
             f"{PROMPTLT}",
        label="TCP+LA", spec="spec_lamp_baselines.md §4",
        reported={**b2n_reported("tcp_la", LAMP_LA), "xd_dg_lamp/imb100": xd_dg_reported("tcp_la")})


@REPORTED.register("mma_la")
class MMALA(ReportedOnly):
    """MMA+LA: adapters on both towers joined by a shared projection (Yang et al., 2024), logit-adjusted; reported only."""

    card = MethodCard(
        paper="Yang, Zhang, Wang, Xie. MMA: Multi-Modal Adapter for Vision-Language Models. CVPR 2024",
        code=f"ZjjConan/Multi-Modal-Adapter:trainers/mmadapter.py@547ee345a4dc5d60d43d3aa54e8eee50a107f591; {PROMPTLT}",
        label="MMA+LA", spec="spec_lamp_baselines.md §5",
        reported={**b2n_reported("mma_la", LAMP_LA), "xd_dg_lamp/imb100": xd_dg_reported("mma_la")},
        ablations=table5(78.95, 73.50, 674, 0.90, "MMA"))
