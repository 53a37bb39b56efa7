"""A :class:`bench.reporting.report.Report` as markdown (tabulate), LaTeX (pandas Styler, booktabs) or HTML.

The main table shows mean ± sample std per column, n, the best value bold and the second
underlined, † where a row is not significantly below the best, and (where the papers report the
cell) the paper's number and our gap as a row group.  Companion tables list the tests against the
reference, Friedman's test and its pairwise comparisons, and bootstrap intervals; a caption says
how all of it was computed::

    text = render(report, "latex")     # or "md", "html"
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

import jinja2

from bench.records.headline import COST_DIGITS, DETERMINISTIC
from .companions import companion_frames, paired_caption, paired_frames, paired_title, tests_used
from .headers import column_titles, left_out, metric_header
from .render_html import companion_page, render_html
from .render_latex import escape as escape_latex, greek, spaced_line, render_latex, slug
from .report import Report
from .results import require_pandas

FORMATS = ("md", "latex", "html")
SYMBOLS = {  # how each format writes ±, the dagger and alpha
    "md": {"pm": "±", "dagger": "†", "alpha": "α", "minus": "−", "small": " ({})", "sub": "<sub>±{}</sub>",
           "sub_dagger": "<sub>±{}</sub>†",
           "computed": "‡"},
    "html": {"pm": "±", "dagger": "†", "alpha": "α", "minus": "−", "small": " ({})", "sub": " ± {}",
             "sub_dagger": " ± {}†", "computed": "‡"},
    "latex": {"pm": r"$\pm$", "dagger": r"$^\dagger$", "alpha": r"$\alpha$", "minus": "$-$",
              "small": r" {{\scriptsize ({})}}", "sub": r"$_{{\pm {}}}$", "sub_dagger": r"$^\dagger_{{\pm {}}}$",
              "computed": r"$^\ddagger$"},
}
CAPTION = jinja2.Template(
    "{% if title %}{{ title }}. {% endif %}Mean{% if std == 'subscript' %} (sample std in small type){% elif std %} {{ s.pm }} std{% endif %}"
    " over {{ seeds }}; bold: best, underlined: second best; "
    "{{ s.dagger }}: not significantly below the best.")
NOTES = jinja2.Template(
    "{% if std %}Std: sample standard deviation (n {{ s.minus }} 1){% else %}Means only, for width{% endif %}; "
    "a seed fixes the few-shot draw, the prompt "
    "initialisation and the data order, the same for every method. Marks among rows with every seed of every "
    "protocol. {{ s.dagger }}: {{ test }}, Holm-corrected within the column, {{ s.alpha }} = {{ alpha }}."
    "{% if reported %} Paper: the number the paper reports on this protocol{% if gap %}; gap: ours {{ s.minus }} "
    "paper{% if gap == 'inline' %} (in brackets){% endif %}{% endif %}.{% if computed %} {{ s.computed }}: the mean "
    "of the paper's numbers in the row, which the paper does not print.{% endif %}{% endif %}{% if incomplete %} Rows marked * lack results and are not ranked or tested.{% endif %}"
    "{% for note in notes %} {{ note }}.{% endfor %}"
    "{% if paper_notes %} Paper numbers: {{ paper_notes | join('; ') }}.{% endif %}")
def caption(report: Report, fmt: str, lead: bool = True) -> str:
    """The short caption: the spec's title (``lead``) and what the numbers and marks are."""
    seeds = sorted({s for p in report.protocols for s in report.seeds[p]})
    title = plain_text(fmt)(report.spec.caption or report.title) if lead else ""
    return CAPTION.render(title=title, s=SYMBOLS[fmt], std=report.spec.std,
                          seeds=f"{len(seeds)} seeds ({', '.join(map(str, seeds))})")


def table_notes(report: Report, fmt: str, paper_rows: Optional[str] = None) -> str:
    """The notes under the table: the statistics, the paper numbers and the report's own notes (which
    name protocols: ``b2n_cpt/*/tau0.25``), escaped for LaTeX and HTML."""
    plain, paper_rows = plain_text(fmt), paper_rows or report.spec.paper_rows
    return NOTES.render(s=SYMBOLS[fmt], std=report.spec.std, test=tests_used(report), alpha=report.spec.alpha,
                        incomplete=bool(report.incomplete), reported=has_reported(report) and paper_rows != "none",
                        gap={"rows": True, "inline": "inline"}.get(paper_rows, False),
                        computed=any(report.cells[(r.name, *c)].paper == "computed"
                                     for r in report.rows for c in report.columns),
                        notes=[plain(n) for n in report.notes + left_out(report)],
                        paper_notes=[plain(n.rstrip(".")) for n in report.paper_notes])


def plain_text(fmt: str):
    return {"md": escape_markdown, "latex": escape_latex, "html": greek}[fmt]  # the HTML template escapes


def has_paper_numbers(report: Report, row: str) -> bool:
    """Whether a shown cell of ``row`` has the paper's number or dash (a mean_of column's protocols are not shown)."""
    return any(report.cells[(row, *column)].reported is not None or report.cells[(row, *column)].paper == "dash"
               for column in report.columns)


def has_reported(report: Report) -> bool:
    return any(has_paper_numbers(report, row.name) for row in report.rows)


def main_frames(report: Report, fmt: str, paper_rows: Optional[str] = None):
    """(text, style) DataFrames of the main table; style cells are "", "bold" or "underline".  The
    paper numbers (spec ``paper_rows``): ``separate`` a block of paper rows under ours, ``rows`` a
    paper and a gap row under each method, ``inline`` the gap beside each of ours, ``none`` left out."""
    pandas = require_pandas()
    mode = (paper_rows or report.spec.paper_rows) if has_reported(report) else "none"
    index, text, style, papers = [], [], [], []
    for row in report.rows:
        label = report.row_labels.get(row.name, row.name) + (" *" if row.name in report.incomplete else "")
        kinds = ["ours", "paper", "gap"] if mode == "rows" and has_paper_numbers(report, row.name) else ["ours"]
        if row.name in report.paper_only:  # no result of ours: the paper's row alone (none without paper rows)
            kinds = ["paper"] if mode == "rows" else []
        for kind in kinds:
            index.append((label, kind) if mode == "rows" else ("Ours", label) if mode == "separate" else label)
            values, marks = row_cells(report, row.name, kind, fmt, inline=mode == "inline")
            text.append([seed_count(report, row.name) if kind == "ours" else "", *values])
            style.append(["", *marks])
        if mode == "separate" and has_paper_numbers(report, row.name):
            papers.append((("Paper", label), ["", *row_cells(report, row.name, "paper", fmt)[0]]))
    for key, values in papers:
        index.append(key)
        text.append(values)
        style.append([""] * len(values))
    columns = [("", "n"), *column_titles(report)]
    if all(len(report.metrics[p]) == 1 for p in report.protocols):
        columns = [c[0] or c[1] for c in columns]
    else:
        columns = pandas.MultiIndex.from_tuples(columns)
    rows = pandas.MultiIndex.from_tuples(index) if mode in ("rows", "separate") else pandas.Index(index)
    return pandas.DataFrame(text, index=rows, columns=columns), pandas.DataFrame(style, index=rows, columns=columns)


def stacked_frames(report: Report, fmt: str):
    """(text, style) of the stacked layout: a block of rows per column group (dataset), the metrics
    as columns, as LAMP and CPT print base/new/HM tables; paper numbers as rows in each block."""
    pandas = require_pandas()
    s, digits = SYMBOLS[fmt], report.spec.digits
    titles = dict(zip(report.columns, column_titles(report)))
    blocks = list(dict.fromkeys(group for group, _ in report.columns))
    metrics = list(dict.fromkeys(metric for _, metric in report.columns))
    papers = report.spec.paper_rows in ("separate", "rows") and has_reported(report)
    index, text, style = [], [], []
    for block in blocks:
        shown = [(block, m) if (block, m) in titles else None for m in metrics]
        header = next(titles[c][0] for c in shown if c is not None)
        for row in [r for r in report.rows if r.name not in report.paper_only]:
            label = report.row_labels.get(row.name, row.name) + (" *" if row.name in report.incomplete else "")
            cells = [report.cells.get((row.name, *c)) if c else None for c in shown]
            index.append((header, label))
            text.append([str(len(next((c.values for c in cells if c is not None), {})))]
                        + [cell_text(report, row.name, c, cell, "ours", s, digits) if c else ""
                           for c, cell in zip(shown, cells)])
            style.append([""] + [mark(report, row.name, c) if c else "" for c in shown])
        for row in report.rows if papers else []:
            values = [cell_text(report, row.name, c, report.cells.get((row.name, *c)), "paper", s, digits)
                      if c else "" for c in shown]
            if any(values):
                index.append((header, report.row_labels.get(row.name, row.name) + " (paper)"))
                text.append(["", *values])
                style.append([""] * (len(values) + 1))
    columns = ["n", *(metric_header(report, "", m) for m in metrics)]
    rows = pandas.MultiIndex.from_tuples(index)
    return pandas.DataFrame(text, index=rows, columns=columns), pandas.DataFrame(style, index=rows, columns=columns)


def row_cells(report: Report, row: str, kind: str, fmt: str, inline: bool = False) -> Tuple[List[str], List[str]]:
    """One table row's cell texts and marks (marks on our numbers only)."""
    s, digits = SYMBOLS[fmt], report.spec.digits
    values, marks = [], []
    for column in report.columns:
        cell = report.cells.get((row, *column))
        text = cell_text(report, row, column, cell, kind, s, digits)
        if inline and cell is not None and cell.gap is not None:
            gap = COST_DIGITS.get(column[-1], digits)
            text += s["small"].format(f"{cell.gap:+.{gap}f}".replace("-", s["minus"]))
        values.append(text)
        marks.append(mark(report, row, column) if kind == "ours" else "")
    return values, marks


def seed_count(report: Report, row: str) -> str:
    """The row's n: its seed count, or the range of counts over its columns."""
    n = sorted({len(report.cells[(row, *c)].values) for c in report.columns if c not in report.empty} or {0})
    return "–".join(map(str, (n[0], n[-1]))) if n[0] != n[-1] else str(n[0])


def cell_text(report: Report, row: str, column, cell, group: str, s: Dict[str, str], digits: int) -> str:
    if cell is None:
        return ""
    digits = COST_DIGITS.get(column[-1], digits)  # seconds and parameters keep their own precision
    computed = s["computed"] if cell.paper == "computed" else ""
    if group == "paper":
        return "–" if cell.paper == "dash" else "" if cell.reported is None else f"{cell.reported:.{digits}f}{computed}"
    if group == "gap":
        return "" if cell.gap is None else f"{cell.gap:+.{digits}f}".replace("-", s["minus"]) + computed
    if cell.mean is None:
        return "–"
    text, dagger = f"{cell.mean:.{digits}f}", (row, *column) in report.daggers
    if len(cell.values) > 1 and report.spec.std and column[-1] not in DETERMINISTIC:
        std = f"{cell.std:.{digits}f}"
        if report.spec.std == "subscript":  # LaTeX sets the dagger over the small std, in no more room
            return text + s["sub_dagger" if dagger else "sub"].format(std)
        text += f" {s['pm']} {std}"
    return text + s["dagger"] if dagger else text


def mark(report: Report, row: str, column) -> str:
    return report.best.get(column, {}).get(row, "")


def render(report: Report, fmt: str, fit: Optional[str] = None, standalone: bool = False) -> str:
    """The report as one text: the main table, then its companion tables."""
    return render_files(report, fmt, fit, standalone)[""]


def render_files(report: Report, fmt: str, fit: Optional[str] = None, standalone: bool = False,
                 split: bool = False, stem: str = "") -> Dict[str, str]:
    """``{"": the report}``, or with ``split`` the main table under "" and each companion table (paired
    tests, Friedman, intervals) under its own name, for files of their own; an HTML main page links
    them as ``<stem>-<name>.html``.  ``fit`` and ``standalone`` act on LaTeX (see
    :func:`bench.reporting.render_latex.render_latex`)."""
    if report.spec.layout == "stacked" and fmt != "html":  # a page sorts methods: it keeps the wide layout
        text, style = stacked_frames(report, fmt)
    else:
        text, style = main_frames(report, fmt, "rows" if fmt == "html" else None)  # a page sorts whole methods
    extra = companion_frames(report)
    notes = [f"* {report.row_labels.get(row, row)}: lacks {'; '.join(gaps)}" for row, gaps in report.incomplete.items()]
    panels = panel_frames(*without_seed_counts(report, text, style), report.spec.panels)
    if fmt == "latex":
        paired = paired_frames(report)
        if paired is not None:  # on a paper page the tests take the main table's shape instead of a long list
            swap = {paired_title(report): (paired_caption(report), panel_frames(*paired, report.spec.panels))}
            extra = dict(swap.get(title, (title, frame)) for title, frame in extra.items())
        return render_latex(report, panels, extra, notes, caption(report, "latex"), table_notes(report, "latex"),
                            fit, standalone, split)
    if fmt == "html":  # the heading is the title: the caption says only what the numbers are
        page = [report.title, text, style]
        tail = [notes, caption(report, "html", lead=False), table_notes(report, "html", "rows")]
        if not split:
            return {"": render_html(*page, extra, *tail)}
        links = [(title, f"{stem}-{slug(title)}.html") for title in extra] if stem else []
        return {"": render_html(*page, {}, *tail, links),
                **{slug(title): companion_page(title, frame) for title, frame in extra.items()}}
    if not split:
        return {"": render_markdown(report, panels, extra, notes)}
    return {"": render_markdown(report, panels, {}, notes),
            **{slug(title): markdown_companion(title, frame) + "\n" for title, frame in extra.items()}}


def escape_markdown(text) -> str:
    """Plain text on one line in markdown: a line break would end a table row (or start a heading),
    a '|' would split a table cell, '*' '_' would start emphasis, a '#' a heading."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", greek(spaced_line(text)))


def without_seed_counts(report: Report, text, style):
    """The ``n`` column only where it tells something: when every row has the same seeds, the
    caption names them, as papers do."""
    if is_seed_count(text.columns[0]) and len(set(text.iloc[:, 0]) - {""}) == 1 and not report.incomplete:
        return text.iloc[:, 1:], style.iloc[:, 1:]
    return text, style


def panel_frames(text, style, panels: int) -> List[Tuple[object, object]]:
    """The main table's (text, style) split into ``panels`` stacked panels, as even as they go: of
    whole column groups (protocols), or of columns when there are fewer groups than panels; each
    keeps the ``n`` column, and the last is padded with blank columns to the same count, so that the
    panels share one tabular."""
    lead = [c for c in text.columns[:1] if is_seed_count(c)]
    data = list(text.columns[len(lead):])
    groups = list(dict.fromkeys(group_of(c) for c in data))
    units = groups if len(groups) >= panels else data
    per = -(-len(units) // panels)
    chunks = [units[i:i + per] for i in range(0, len(units), per)]
    if len(chunks) < 2:
        return [(text, style)]
    out = []
    for chunk in chunks:
        columns = [*lead, *(c for c in data if (group_of(c) if units is groups else c) in chunk)]
        out.append((text[columns].copy(), style[columns].copy()))
    width = max(len(t.columns) for t, _ in out)
    for t, st in out:
        for k in range(len(t.columns), width):
            blank = (" " * k, "") if t.columns.nlevels > 1 else " " * k
            t[blank], st[blank] = "", ""
    return out


def is_seed_count(column) -> bool:
    return column in ("n", ("", "n"))  # main_frames' first column: one header row, or two


def group_of(column) -> str:
    return column[0] if isinstance(column, tuple) else column


def render_markdown(report: Report, panels, extra, notes) -> str:
    tables = [markdown_table(report, text, style) for text, style in panels]
    parts = [f"## {escape_markdown(report.title)}", "", "\n\n".join(tables), "",
             caption(report, "md"), "", table_notes(report, "md")]
    parts += ["\n" + markdown_companion(title, frame) for title, frame in extra.items()]
    if notes:
        parts += ["", *map(escape_markdown, notes)]
    return "\n".join(parts) + "\n"


def markdown_table(report: Report, text, style) -> str:
    wrap = {"bold": "**{}**", "underline": "<ins>{}</ins>", "": "{}"}  # GitHub's sanitiser strips <u>
    shown = text.copy()
    for i in range(len(text)):
        for j in range(len(text.columns)):
            shown.iat[i, j] = wrap[style.iat[i, j]].format(text.iat[i, j]) if text.iat[i, j] else ""
    if shown.index.nlevels > 1:  # (method, ours/paper/gap), (Ours/Paper, method) or (dataset, method)
        separate, stacked = report.spec.paper_rows == "separate", report.spec.layout == "stacked"
        shown.index = [f"{a} / {b}" if stacked else (b if a == "Ours" else f"{b} (paper)") if separate
                       else (a if b == "ours" else f"{a} ({b})") for a, b in shown.index]
    shown.index = [escape_markdown(label) for label in shown.index]
    if shown.columns.nlevels > 1:  # one protocol's columns: its name is the title's, not every header's
        single = len({c[0] for c in shown.columns if c[0] and c[1] != "n"}) == 1
        shown.columns = [c[1] if single and c[1] else " ".join(filter(None, c)) for c in shown.columns]
    shown.columns = [escape_markdown(title) for title in shown.columns]
    return shown.to_markdown(disable_numparse=True)


def markdown_companion(title: str, frame) -> str:
    frame = frame.astype(str).map(escape_markdown).rename(columns=escape_markdown)
    return f"### {escape_markdown(title)}\n\n" + frame.to_markdown(index=False, disable_numparse=True)


