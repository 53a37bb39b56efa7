"""A report's companion tables: a figure's plotted numbers (:mod:`bench.reporting.figures`), the paired tests against the reference (a list for markdown and
HTML, a table in the main table's shape for a paper page), Friedman's test with its mean ranks and
pairwise tests, and the bootstrap intervals of each row's mean::

    frames = companion_frames(report)      # {title: DataFrame}
    text, style = paired_frames(report)    # p-values in the main table's shape (LaTeX)
"""
from __future__ import annotations

from typing import Dict, Optional

from .figures import figure_frames
from .headers import column_titles
from .report import MEAN, Report
from .results import require_pandas
from .stats import wilcoxon_pairs_needed

TESTS = {"auto": "paired by seed: a t-test below {need} seeds, Wilcoxon signed-rank from {need} (where it can "
                 "still reach significance after Holm's correction over {m})",
         "t": "paired t-test by seed", "wilcoxon": "Wilcoxon signed-rank test paired by seed"}


def tests_used(report: Report) -> str:
    family = max(len(report.complete()) - 1, 1)  # the tests in one column: every other row against one
    m = f"{family} test{'s' if family > 1 else ''}"
    return TESTS[report.spec.test].format(need=wilcoxon_pairs_needed(report.spec.alpha, family), m=m)


def companion_frames(report: Report) -> Dict[str, object]:
    """Titled DataFrames: tests against the reference, Friedman's pairwise tests, bootstrap intervals."""
    pandas, d = require_pandas(), report.spec.digits
    out = figure_frames(report)  # a figure's numbers first: what a reader cites
    titles = dict(zip(report.columns, (" ".join(t) for t in column_titles(report))))
    name = lambda row: report.row_labels.get(row, row)  # noqa: E731
    rows = [[titles[col], name(row), comp.n, diff(report, row, col, d), comp.test, pval(comp.p), pval(adj),
             "yes" if adj is not None and adj < report.spec.alpha else ("no" if adj is not None else comp.note)]
            for col, family in report.versus.items() for row, (comp, adj) in family.items()]
    if rows:
        out[paired_title(report)] = pandas.DataFrame(
            rows, columns=["Column", "Method", "n", "Difference", "Test", "p", "p (Holm)", "Significant"])
    fr = report.friedman
    if fr is not None and len(report.protocols) > 1:  # ranks over one protocol are the table's own order
        head = (f"Friedman over {fr.n_protocols} protocols: χ² = {fr.statistic:.3f}, p = {pval(fr.p)}"
                if fr.p is not None else f"Friedman: {fr.note}")
        if fr.p is not None and fr.note:  # one line instead of a table of untested pairs
            head += f"; {fr.note}"
        ranks = [[name(m), f"{r:.2f}"] for m, r in sorted(fr.mean_ranks.items(), key=lambda kv: kv[1])]
        if ranks:
            out[head] = pandas.DataFrame(ranks, columns=["Method", "Mean rank"])
        pairs = [[name(a), name(b), pval(p)] for (a, b), p in fr.pairwise.items()]
        if pairs and any(p is not None for p in fr.pairwise.values()):
            out["Pairwise Wilcoxon signed-rank tests over protocols (Holm)"] = pandas.DataFrame(
                pairs, columns=["Method", "Method ", "p (Holm)"])
    ci = [[name(row), f"{lo:.{d}f}", f"{hi:.{d}f}", how] for row, v in report.intervals.items() if v
          for lo, hi, how in [v]]
    if ci:
        title = (f"95% intervals of the {MEAN.lower()} over protocols (bootstrap: seeds resampled within each "
                 "protocol; t: over the per-seed means)")
        hows = {row[-1] for row in ci}
        if len(hows) == 1:  # one way for every row: said once, in the title
            title, ci = f"{title}; all by {hows.pop()}", [row[:-1] for row in ci]
        out[title] = pandas.DataFrame(ci, columns=["Method", "Low", "High", "How"][:len(ci[0])])
    return out


def paired_title(report: Report) -> str:
    return f"Paired tests against {report.row_labels.get(report.spec.reference, report.spec.reference)}"


def paired_caption(report: Report) -> str:
    return (f"{paired_title(report)}: the Holm-adjusted p of each cell ({tests_used(report)}); bold: "
            f"significant at α = {report.spec.alpha}; –: not tested")


def paired_frames(report: Report):
    """(text, style) of the tests against the reference in the main table's shape, for a paper page:
    a row per tested method, a column per main-table column, each cell the Holm-adjusted p (bold:
    significant; "–" untested); None when nothing was tested."""
    if not report.versus:
        return None
    pandas = require_pandas()
    columns = [c for c in report.columns if c in report.versus]
    names = [r.name for r in report.rows if any(r.name in report.versus[c] for c in columns)]
    tested = [[n in report.versus[c] for c in columns] for n in names]
    adjusted = [[report.versus[c][n][1] if n in report.versus[c] else None for c in columns] for n in names]
    text = [[pval(p).replace("< ", "$<$") if held else "" for p, held in zip(ps, hs)]  # LaTeX
            for ps, hs in zip(adjusted, tested)]
    style = [["bold" if p is not None and p < report.spec.alpha else "" for p in ps] for ps in adjusted]
    titles = column_titles(report, columns)
    heads = ([t[0] or t[1] for t in titles] if all(len(report.metrics[p]) == 1 for p in report.protocols)
             else pandas.MultiIndex.from_tuples(titles))
    index = [report.row_labels.get(n, n) for n in names]
    return pandas.DataFrame(text, index=index, columns=heads), pandas.DataFrame(style, index=index, columns=heads)


def diff(report: Report, row: str, column, digits: int) -> str:
    a, b = report.cells[(row, *column)].mean, report.cells[(report.spec.reference, *column)].mean
    return "" if a is None or b is None else f"{a - b:+.{digits}f}".replace("-", "−")  # a true minus sign


def pval(p: Optional[float]) -> str:
    return "–" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")
