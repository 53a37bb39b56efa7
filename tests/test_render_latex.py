"""Decimal alignment of the LaTeX tables, measured where TeX puts the glyphs: every decimal point's
position on the page is written out by pdflatex (``\\pdfsavepos``) and compared within each column."""
import re
import shutil
import subprocess

import pytest

from bench.reporting.render_latex import BOLD, aligned

COLUMNS = [  # (cell, mark) as render writes them: ours with std and daggers, the paper's, gaps, a dash
    [("45.23 $\\pm$ 1.20$^\\dagger$", ""), ("7.10 $\\pm$ 12.05", "bold"), ("100.00 $\\pm$ 0.33", "underline"),
     ("46.10", ""), ("$-$0.87", ""), ("+12.30$^\\ddagger$", ""), ("–", "")],
    [("61.2$_{\\pm 0.4}$$^\\dagger$", "bold"), ("9.8$_{\\pm 10.1}$", ""), ("63.0 {\\scriptsize (+1.8)}", ""),
     ("58.4", "underline")],
    [("1114.763 $\\pm$ 58.168", ""), ("0.008", "bold"), ("", "")],
]
DOC = r"""\documentclass{article}
\newwrite\marks \immediate\openout\marks=\jobname.marks
\def\pointmark#1{\pdfsavepos\write\marks{#1 \the\pdflastxpos}}
\begin{document}
%s
\end{document}
"""


def positions(tmp_path, columns, name):
    """{(column, row): [x of each decimal point in the cell]} and the table's width, from pdflatex."""
    rows = max(len(c) for c in columns)
    body = []
    for i in range(rows):
        cells = []
        for j, column in enumerate(columns):
            texts = aligned([c for c, _ in column], [m for _, m in column])
            text = texts[i] if i < len(texts) else ""
            cells.append(mark_points(text, f"{j}:{i}"))
        body.append(" & ".join(cells) + r" \\")
    table = (r"\setbox0\hbox{\begin{tabular}{" + "r" * len(columns) + "}\n" + "\n".join(body)
             + "\n\\end{tabular}}\\typeout{WIDTH \\the\\wd0}\\box0")
    (tmp_path / f"{name}.tex").write_text(DOC % (BOLD + "\n" + table))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    log = (tmp_path / f"{name}.log").read_text()
    assert done.returncode == 0, log[-2000:]
    assert "Overfull" not in log and "Underfull" not in log
    found = {}
    for line in (tmp_path / f"{name}.marks").read_text().split("\n"):
        if line.strip():
            key, x = line.split()
            found.setdefault(tuple(map(int, key.split(":"))), []).append(int(x))
    return found, re.search(r"WIDTH ([\d.]+)pt", log).group(1)


def mark_points(text: str, key: str) -> str:
    r"""Each decimal point that is printed (not one inside a ``\phantom``) followed by a position mark."""
    out, depth, phantom_depth = [], 0, None
    i = 0
    while i < len(text):
        if text.startswith("\\phantom{", i):
            phantom_depth = depth if phantom_depth is None else phantom_depth
            out.append("\\phantom{")
            depth += 1
            i += len("\\phantom{")
            continue
        ch = text[i]
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "}" and phantom_depth is not None and depth == phantom_depth:
            phantom_depth = None
        out.append(ch + (f"\\pointmark{{{key}}}" if ch == "." and phantom_depth is None else ""))
        i += 1
    return "".join(out)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs a TeX engine (pdflatex; .ci/run installs it)")
def test_numbers_the_paper_rows_and_gaps_align_on_the_decimal_point_and_bold_is_no_wider(tmp_path):
    found, width = positions(tmp_path, COLUMNS, "marked")
    for j, column in enumerate(COLUMNS):
        cells = [(i, found[(j, i)]) for i in range(len(column)) if (j, i) in found]
        assert len({xs[0] for _, xs in cells}) == 1, (j, cells)  # every mean's point at one x
        stds = {xs[1] for i, xs in cells if len(xs) > 1 and "\\pm$ " in column[i][0]}
        assert len(stds) <= 1, (j, cells)  # and every std's after a ±
        assert len(cells) == sum(bool(re.match(r"[+$\d]", c)) for c, _ in column)
    plain = [[(c, "") for c, _ in column] for column in COLUMNS]
    assert positions(tmp_path, plain, "plain")[1] == width  # the bold and underlined cells take no room


def test_a_column_without_numbers_keeps_its_text_and_marks():
    assert aligned(["yes", "", "no"], ["bold", "", "underline"]) == ["\\textbf{yes}", "", "\\underline{no}"]
