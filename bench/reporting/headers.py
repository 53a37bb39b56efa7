"""How a report's columns are headed: the spec's ``headers``, the protocols' and evaluations' labels,
and the part of a protocol's name that varies between columns, spelled as the papers write it::

    column_titles(report)        # [("Caltech101", "HM-A"), ("Caltech101", "HM-M"), ...]
    spelled("tau0.25")           # "τ = 0.25"
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

from .leaderboard import metric_title, varying_parts
from .render_latex import greek
from .report import Report


def column_titles(report: Report, columns: Optional[List[Tuple[str, str]]] = None) -> List[Tuple[str, str]]:
    """(group header, metric title) per column (default: the columns shown): a group's label, else the
    part of its protocol's name that varies between the columns (``b2n_lamp/eurosat/imb10`` among
    datasets: ``eurosat``)."""
    plain = [group.name for group in report.groups if not group.label]
    short = dict(zip(plain, map(spelled, varying_parts(plain)))) if len(plain) > 1 else {}
    labels = {group.name: group.label for group in report.groups if group.label}
    for label in {v for v in labels.values() if list(labels.values()).count(v) > 1}:  # ImageNet at two taus
        same = [name for name, v in labels.items() if v == label and name in report.read]
        labels.update({name: f"{label} ({spelled(part)})" for name, part in zip(same, varying_parts(same))})
    return [(labels.get(p) or short.get(p, p), metric_header(report, p, m)) for p, m in columns or report.columns]


def spelled(part: str) -> str:
    """A grid label as the papers write it: "tau0.25" is "τ = 0.25", "beta2" "β = 2", "imb10" "imbalance 10"."""
    if re.fullmatch(r"(tau|beta)\d[\d.]*", part):
        return greek(re.sub(r"^(tau|beta)", r"\1 = ", part))
    return re.sub(r"^imb(\d+)$", r"imbalance \1", part)


def metric_header(report: Report, group: str, metric: str) -> str:
    """A metric's column header: the spec's ``headers``, else the evaluation's label (its macro-F1:
    the label and F1), else the metric's title."""
    if metric in report.spec.headers:
        return report.spec.headers[metric]
    labels = report.metric_labels.get(group) or {}
    if metric in labels:
        return labels[metric]
    base = metric[:-len("_macro_f1")] if metric.endswith("_macro_f1") else None
    return f"{labels[base]} F1" if base in labels else metric_title(metric)


def left_out(report: Report) -> List[str]:
    """A note per column left out because no record has a number there (no class in the group)."""
    dropped = [c for c in report.all_columns if c in report.empty]
    return [f"{' '.join(filter(None, title))}: left out, no result has a number (no class falls in the group)"
            for title in column_titles(report, dropped)] if dropped else []
