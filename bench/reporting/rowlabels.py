"""How a report names its rows: a row by its spec label or its card's, a sweep's points by their series
and setting, and the sweep rows that repeat an earlier row's results (ranked and tested once)::

    row_label(RowSpec("coop", set={"n_ctx": 8}), card)    # "CoOp (n_ctx=8)"
    label_series(report, cards); report.same_as = repeated_rows(report)
"""
from __future__ import annotations

from typing import Dict


def row_label(row, card) -> str:
    """A row as tables name it: its spec label, else the method card's label and the row's settings."""
    if row.label:
        return row.label
    method = getattr(card, "label", "") or row.method
    settings = ", ".join(f"{k}={v}" for k, v in row.set.items())
    return f"{method} ({settings})" if settings else method


def label_series(report, cards) -> None:
    """A sweep's series as tables name its row ("CPT", the card's label), and each of its points as
    the series and the setting ("CPT (λ_TETF=0.25)")."""
    for name, point in report.points.items():
        series = row_label(point.row, cards.get(point.row.method))
        report.series_labels[point.series] = series
        report.row_labels[name] = f"{series} ({point.shown})"


def repeated_rows(report) -> Dict[str, str]:
    """Rows that read the very result files of an earlier row (a sweep's default value appears in each
    panel): shown, but ranked and tested once, as the earlier row."""
    first: Dict[tuple, str] = {}
    out: Dict[str, str] = {}
    for row in report.rows:
        paths = tuple(tuple(sorted(report.cells[(row.name, p, m)].paths.items()))
                      for p, metrics in report.read.items() for m in metrics[:1])
        if not any(paths):
            continue
        if paths in first:
            out[row.name] = first[paths]
        else:
            first[paths] = row.name
    if out:
        shown = [f"{report.row_labels.get(r, r)} = {report.row_labels.get(e, e)}" for r, e in out.items()]
        report.notes.append(f"the same results as an earlier row, ranked and tested once: {'; '.join(shown)}")
    return out
