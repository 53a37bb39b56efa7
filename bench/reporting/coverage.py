"""Which shipped report renders each result table and figure of the three seed papers (``bench list
seeds``), so the coverage is visible and tested::

    [(item, specs) for item, _, specs in SEED_PAPERS["LAMP"].items if item.startswith("Table 1")]
    # [("Table 1", ["lamp_b2n_imb10", "lamp_b2n_imb20", "lamp_b2n_imb50"])]
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Tuple

KB_STATS = "bench kb stats"  # a command beside a spec: MDPR Table 7 is a statistic of a KB file, no run needed


class SeedPaper(NamedTuple):
    citation: str
    items: List[Tuple[str, str, List[str]]]  # (table or figure, what it shows, the specs that render it)


def _tau(prefix: str) -> List[str]:
    return [f"{prefix}_tau{tau}" for tau in ("1", "0.25", "0.06")]


SEED_PAPERS: Dict[str, SeedPaper] = {
    "MDPR": SeedPaper("Jia et al., Findings of EMNLP 2025", [
        ("Table 2", "CIFAR-100-LT at IR 10, 50, 100", ["mdpr_cifar100_lt"]),
        ("Table 3", "ImageNet-LT and Places-LT", ["mdpr_imagenet_places"]),
        ("Table 4", "Places-LT with ResNet backbones", ["mdpr_table4"]),
        ("Table 5", "knowledge-dimension ablation", ["mdpr_table5"]),
        ("Table 6", "parameters and time per epoch", ["mdpr_table6"]),
        ("Table 7", "statistics of the knowledge-base prior M", ["mdpr_table7", KB_STATS]),
        ("Figure 3", "ablation of the heads: CIFAR-100-LT IR 50, ImageNet-LT, Places-LT", ["mdpr_figure3"]),
        ("Figure 4", "ablation of the heads at IR 10 and 100", ["mdpr_figure4"]),
    ]),
    "LAMP": SeedPaper("an anonymous ICLR-style submission", [
        ("Table 1", "long-tailed base-to-new, imbalance 10, 20, 50", ["lamp_b2n_imb10", "lamp_b2n_imb20",
                                                                      "lamp_b2n_imb50"]),
        ("Table 2", "balanced 16-shot base-to-new", ["lamp_b2n_balanced"]),
        ("Table 3", "long-tailed cross-dataset transfer", ["xd_dg_lamp", "xd_dg_lamp_f1"]),
        ("Table 4", "long-tailed domain generalisation", ["xd_dg_lamp", "xd_dg_lamp_f1"]),
        ("Table 5", "efficiency", ["lamp_table5"]),
        ("Table 6", "components", ["lamp_table6"]),
        ("Table 7", "beta sweep", ["lamp_table7_beta"]),
        ("Table 9", "long-tailed base-to-new, imbalance 100", ["lamp_b2n_imb100"]),
        ("Table 10", "long-tailed base-to-new, imbalance 200", ["lamp_b2n_imb200"]),
        ("Table 11", "pool size", ["lamp_table11_pool"]),
        *((f"Table {11 + i}", f"balanced {shots}-shot base-to-new", [f"lamp_b2n_shots{shots}"])
          for i, shots in enumerate((1, 2, 4, 8), start=1)),
        ("Figure 1", "accuracy and macro-F1 summary", ["lamp_figure1"]),
        ("Figure 3", "sensitivity: K x S, and the other switches", ["lamp_figure3"]),
    ]),
    "CPT": SeedPaper("arXiv 2605.11939, CVPR 2026", [
        ("Table 1", "loss ablation", ["cpt_table1"]),
        ("Table 2", "long-tailed base-to-new, tau 1, 0.25, 0.06", _tau("cpt_b2n")),
        ("Table 3", "cross-dataset transfer", _tau("xd_dg_cpt")),
        ("Table 4", "domain generalisation", _tau("xd_dg_cpt")),
        ("Table 5", "clustering choice", ["cpt_table5"]),
        ("Figure 1", "similarity matrices and seed variance", ["cpt_figure1", "cpt_figure1d"]),
        ("Figure 3", "loss-weight sensitivity", ["cpt_figure3"]),
        ("Figure 4", "per-seed distributions", ["cpt_figure4"]),
        ("Figure 5", "classes per cluster", ["cpt_figure5"]),
    ]),
}


def coverage_lines() -> List[str]:
    """Each paper's tables and figures with their specs ("-": none yet), and the totals."""
    lines, totals = [], {"Table": [0, 0], "Figure": [0, 0]}
    for paper, (citation, items) in SEED_PAPERS.items():
        lines.append(f"{paper} ({citation}):")
        width, spec_width = (max(len(text) for text in column) for column in
                             zip(*((item, ", ".join(specs)) for item, _, specs in items)))
        for item, what, specs in items:
            totals[item.split()[0]][0] += bool(specs)
            totals[item.split()[0]][1] += 1
            lines.append(f"  {item:<{width}}  {', '.join(specs) or '-':<{spec_width}}  {what}")
    (tables, all_tables), (figures, all_figures) = totals["Table"], totals["Figure"]
    lines.append(f"{tables} of {all_tables} tables and {figures} of {all_figures} figures render from a shipped "
                 f"spec or command (bench report SPEC; a figure's with --plots DIR)")
    return lines
