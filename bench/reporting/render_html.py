"""HTML output of a report: a standalone page (charset, a small stylesheet) whose columns sort on a
click (each method's ours/paper/gap rows move together), opened in any browser::

    page = render_html(report, text, style, companions, notes, caption_text, notes_text)

``page.html#sort=3`` opens it sorted by its fourth column, highest first.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Sequence, Tuple

import jinja2

from .render_latex import greek

PAGE = jinja2.Environment(autoescape=True).from_string("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0 0.5rem; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; margin-bottom: 0.4rem; max-width: 60rem; }
th, td { padding: 0.25rem 0.6rem; text-align: right; white-space: nowrap; }
th.lead, td.lead { text-align: left; }
th[colspan]:not([colspan="1"]) { text-align: center; }
thead tr:last-child th { border-bottom: 1px solid #333; cursor: pointer; user-select: none; }
thead tr:first-child th { border-top: 2px solid #333; }
tbody { border-bottom: 1px solid #ddd; }
tr.paper td, tr.gap td { color: #666; font-size: 0.9em; }
td.bold { font-weight: bold; }
td.underline { text-decoration: underline; }
th.sorted-desc::after { content: " \\25BC"; }
th.sorted-asc::after { content: " \\25B2"; }
p.notes { font-size: 0.9em; color: #444; max-width: 60rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% if links %}<p class="notes">Companion tables: {% for name, href in links %}<a href="{{ href }}">{{ name }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</p>{% endif %}
{% for table in tables %}
{% if table.heading %}<h2>{{ table.heading }}</h2>{% endif %}
<table class="sortable">
{% if table.caption %}<caption>{{ table.caption }}</caption>{% endif %}
<thead>
{% for header in table.headers %}<tr>{% for cell in header %}<th colspan="{{ cell.span }}" class="{{ cell.cls }}">{{ cell.text }}</th>{% endfor %}</tr>
{% endfor %}</thead>
{% for group in table.groups %}<tbody>
{% for row in group %}<tr class="{{ row.kind }}">{% for cell in row.cells %}<td class="{{ cell.cls }}">{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
{% endfor %}</table>
{% for note in table.notes %}<p class="notes">{{ note }}</p>
{% endfor %}{% endfor %}
<script>
// Sorts a table's row groups (one tbody per method) by a column of their first row.
function sortTable(table, column, descending) {
  const key = (group) => {
    const cell = group.rows[0].cells[column];
    const text = cell ? cell.textContent.replace("\\u2212", "-").trim() : "";
    const value = parseFloat(text);
    return isNaN(value) ? text : value;
  };
  const groups = Array.from(table.tBodies);
  groups.sort((a, b) => {
    const x = key(a), y = key(b);
    const order = typeof x === "number" && typeof y === "number" ? x - y
      : typeof x === "number" ? 1 : typeof y === "number" ? -1 : String(x).localeCompare(String(y));
    return descending ? -order : order;
  });
  groups.forEach((group) => table.appendChild(group));
  const head = table.tHead.rows[table.tHead.rows.length - 1];
  Array.from(head.cells).forEach((th, i) => {
    th.classList.toggle("sorted-desc", i === column && descending);
    th.classList.toggle("sorted-asc", i === column && !descending);
  });
}
document.querySelectorAll("table.sortable").forEach((table) => {
  const head = table.tHead.rows[table.tHead.rows.length - 1];
  Array.from(head.cells).forEach((th, i) => th.addEventListener("click",
    () => sortTable(table, i, !th.classList.contains("sorted-desc"))));
});
const wanted = location.hash.match(/^#sort=(\\d+)$/);
if (wanted) { sortTable(document.querySelector("table.sortable"), Number(wanted[1]), true); }
</script>
</body>
</html>
""")


def cell(text, cls: str = "", span: int = 1) -> dict:
    return {"text": "" if text is None else greek(str(text)), "cls": cls, "span": span}


def main_table(text, style, caption: str, notes: List[str]) -> dict:
    """The report's table: a header row per column level, a row group per method (ours, paper, gap)."""
    grouped = text.index.nlevels > 1
    lead = [cell("Method", "lead")] + ([cell("", "lead")] if grouped else [])
    if text.columns.nlevels > 1:
        tops = [cell("", span=len(lead))] + [cell(top, span=len(list(run)))
                                             for top, run in itertools.groupby(c[0] for c in text.columns)]
        headers = [tops, lead + [cell(c[1]) for c in text.columns]]
    else:
        headers = [lead + [cell(c) for c in text.columns]]
    groups: List[List[dict]] = []
    for i, key in enumerate(text.index):
        label, kind = key if grouped else (key, "ours")
        cells = [cell(label if kind == "ours" else "", "lead")] + ([cell(kind, "lead")] if grouped else [])
        cells += [cell(text.iat[i, j], style.iat[i, j]) for j in range(len(text.columns))]
        if kind == "ours" or not groups:
            groups.append([])
        groups[-1].append({"kind": kind, "cells": cells})
    return {"caption": caption, "headers": headers, "groups": groups, "notes": notes}


def companion_table(title: str, frame) -> dict:
    """A companion table (tests, ranks, intervals): one sortable row per row group."""
    headers = [[cell(c, "lead" if i == 0 else "") for i, c in enumerate(frame.columns)]]
    groups = [[{"kind": "", "cells": [cell(v, "lead" if i == 0 else "") for i, v in enumerate(row)]}]
              for row in frame.itertuples(index=False)]
    return {"heading": title, "headers": headers, "groups": groups, "notes": []}


def render_html(title: str, text, style, companions: Dict[str, object], notes: List[str], caption: str,
                table_notes: str, links: Sequence[Tuple[str, str]] = ()) -> str:
    """The page: its title once (the heading; the caption says what the numbers are), the main table,
    and the companion tables on it, or ``links`` (name, file) to their pages of their own."""
    tables = [main_table(text, style, caption, [table_notes, *notes])]
    tables += [companion_table(name, frame) for name, frame in companions.items()]
    return PAGE.render(title=greek(title), tables=tables, links=[(greek(name), href) for name, href in links])


def companion_page(title: str, frame) -> str:
    """One companion table as a page of its own."""
    return PAGE.render(title=greek(title), tables=[companion_table(greek(title), frame)])
