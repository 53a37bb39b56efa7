"""LaTeX output of a report through pandas Styler: booktabs rules, ``\\textbf``/``\\underline``
marks, multicolumn protocol headers and multirow method groups (suite_anchors §B.5).

The tables need ``\\usepackage{booktabs}`` and ``\\usepackage{multirow}``, and adjustbox (and
rotating) with ``fit`` (see :func:`preamble`)::

    files = render_latex(report, text, style, companions, notes, caption_text, notes_text, fit="textwidth",
                         standalone=True, split=True)   # {"": main table, "paired-tests": ..., ...}
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from .report import Report

PREAMBLE = "\\usepackage{booktabs}\n\\usepackage{multirow}\n"


def preamble(fit: Optional[str], body: str = "") -> str:
    """The packages the tables need: booktabs and multirow, adjustbox to fit, rotating to turn, and
    the T1 font encoding where a straight double quote is printed (OT1 has none: its " is a ”)."""
    turn = "\\usepackage{rotating}\n" if fit == "landscape" else ""
    quote = "\\usepackage[T1]{fontenc}\n" if "\\textquotedbl" in body else ""
    return quote + PREAMBLE + ("\\usepackage{adjustbox}\n" if fit else "") + turn


# A bold number over the room of its regular digits: the integer part (and point) grows left, the
# fraction right, so the point stays where the column's points are and the column no wider.
BOLD = "\\providecommand{\\benchbold}[2]{\\phantom{#1}\\llap{\\textbf{#1}}\\rlap{\\textbf{#2}}\\phantom{#2}}"
NUMBER = re.compile(r"(?P<sign>\+|\$-\$|\$<\$)?(?P<int>\d+)(?P<point>\.)?(?P<frac>\d*)(?P<rest>.*)", re.S)
STD = re.compile(r"(\$\\pm\$ )(\d+)")  # the std after "mean $\pm$ " (a small subscript std is left as it is)


def escape(text) -> str:
    """Plain text on one line in LaTeX: the ten special characters made literal, and < > | " (which
    the default OT1 font encoding prints as ¡ ¿, an em dash and a closing quote)."""
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
             "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", '"': r"\textquotedbl{}",
             "−": r"$-$", "τ": r"$\tau$", "β": r"$\beta$", "α": r"$\alpha$", "λ": r"$\lambda$", "γ": r"$\gamma$",
             "χ": r"$\chi$", "²": r"$^2$"}
    text = re.sub(r'[\\&%$#_{}~^<>|"−τβαλγχ²]', lambda m: table[m.group()], greek(spaced_line(text)))
    # a symbol's subscript, as figure specs name switches (λ_TETF, γ_0): typeset, not an underscore
    return re.sub(r"\$\\(tau|beta|alpha|lambda|gamma)\$\\_([A-Za-z0-9]+)", r"$\\\1_{\\mathrm{\2}}$", text)


def spaced_line(text) -> str:
    """``text`` with its line breaks (and other control characters) as spaces: a break would end a
    ``%`` comment (the rest of the line then runs as TeX), a blank line a paragraph inside a cell."""
    return re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]+", " ", str(text))


def greek(text: str) -> str:
    """The papers' symbols for their hyper-parameters: "tau = 0.25" is "τ = 0.25", "beta = 2" "β = 2"."""
    return re.sub(r"\b(tau|beta)\b(?=\s*=)", lambda m: {"tau": "τ", "beta": "β"}[m.group(1)], text)


def label_of(report: Report) -> str:
    """The spec's ``label``, else ``tab:<spec name>`` (unique among shipped specs), else the title's words."""
    if report.spec.label:  # checked by the spec: letters, digits and : . _ -
        return report.spec.label
    if report.spec.name:  # a file name may hold anything: what a label may not hold becomes -
        return "tab:" + re.sub(r"[^A-Za-z0-9:.-]+", "-", report.spec.name)
    return "tab:" + "-".join(re.findall(r"[a-z0-9]+", report.title.lower())[:8])


def with_cmidrules(body: str, text) -> str:
    """A ``\\cmidrule`` under each protocol's ``\\multicolumn`` header (Styler writes none)."""
    if text.columns.nlevels < 2:
        return body
    rules, start = [], text.index.nlevels + 1
    tops = list(text.columns.get_level_values(0))
    i = 0
    while i < len(tops):
        j = i
        while j + 1 < len(tops) and tops[j + 1] == tops[i]:
            j += 1
        if tops[i] and j > i:
            rules.append(f"\\cmidrule(lr){{{start + i}-{start + j}}}")
        i = j + 1
    lines = body.split("\n")
    header = next((n for n, line in enumerate(lines) if "\\multicolumn" in line), None)
    if header is None or not rules:
        return body
    return "\n".join(lines[:header + 1] + [" ".join(rules)] + lines[header + 1:])


def render_latex(report: Report, panels: List[Tuple[object, object]], companions: Dict[str, object],
                 notes: List[str], caption: str, footnote: str = "", fit: Optional[str] = None,
                 standalone: bool = False, split: bool = False) -> Dict[str, str]:
    """The report as LaTeX: ``{"": main table, companion slug: its table}`` with ``split``, else one
    entry holding them all.  ``panels`` are the main table's (text, style) frames, stacked in one
    tabular.  ``fit="textwidth"`` shrinks a table wider than the line (or taller than the page) to
    fit; ``fit="landscape"`` turns the main table sideways (``sidewaystable``, rotating) and shrinks
    it to the page's length; ``standalone`` makes each entry a document that compiles as it is."""
    main = main_table(report, panels, caption, footnote, fit)
    if notes:
        main += "\n% " + "\n% ".join(map(spaced_line, notes))
    tables = {"": main}
    for i, (title, frame) in enumerate(companions.items(), start=1):
        label = f"{label_of(report)}-{i}"
        if isinstance(frame, list):  # (text, style) panels in the main table's shape, at its width
            tables[slug(title)] = main_table(report, frame, escape(title), "", fit, label)
            continue
        table = frame.style.hide(axis="index").format(escape).format_index(escape, axis=1)
        body = table.to_latex(hrules=True, caption=escape(title), label=label, position_float="centering",
                              environment=report.spec.float_env)  # a two-column table's companions span both
        body = body.replace("\\begin{tabular}", f"\\smallskip\n\\{report.spec.font}\n\\begin{{tabular}}", 1)
        tables[slug(title)] = fitted(body, fit)
    if not split:
        tables = {"": "\n".join(tables.values())}
    return {name: document(body, fit) if standalone else heading(report, body, fit) + body
            for name, body in tables.items()}


def heading(report: Report, body: str, fit: Optional[str]) -> str:
    """The comment over a table to paste: its title and the packages it needs."""
    needs = " ".join(preamble(fit, body).split())
    return f"% {escape(report.title)}: generated by `bench report`; needs {needs}\n"


def main_table(report: Report, panels, caption: str, footnote: str, fit: Optional[str],
               label: Optional[str] = None) -> str:
    """The float: caption and label (default the report's) on top, then the panels in one tabular at
    the spec's font size and column separation; the notes inside it, after it, or nowhere (the
    spec's ``notes``)."""
    spec = report.spec
    body = fitted(stack_panels([tabular(report, text, style) for text, style in panels]), fit,
                  turned=fit == "landscape")
    env = "sidewaystable" if fit == "landscape" else spec.float_env  # a wide table gets the page's length
    size = [f"\\{spec.font}"] + ([f"\\setlength{{\\tabcolsep}}{{{spec.colsep:g}pt}}"] if spec.colsep != 6 else [])
    lines = [f"\\begin{{{env}}}", "\\centering", f"\\caption{{{caption}}}", f"\\label{{{label or label_of(report)}}}",
             "\\smallskip", *size, *([BOLD] if "\\benchbold" in body else []),  # no skip under a top caption
             body.rstrip("\n")]
    if footnote and spec.notes == "inside":  # under the tabular, inside the float
        lines.append(f"\\par\\smallskip{{\\footnotesize\\raggedright {footnote}\\par}}")
    lines.append(f"\\end{{{env}}}")
    if footnote and spec.notes == "below":  # a paragraph of its own after the float, in the text's flow
        lines.append(f"{{\\footnotesize\\noindent {footnote}\\par}}")
    return "\n".join(lines) + "\n"


def tabular(report: Report, text, style) -> str:
    """One panel as a booktabs tabular (Styler), with its header rules and block rules."""
    text = text.copy()
    for j, column in enumerate(text.columns):
        if column not in ("n", ("", "n")):  # a seed count ("2–3") is no decimal number
            text.iloc[:, j] = aligned(list(text.iloc[:, j]), list(style.iloc[:, j]))
    styler = text.style.format_index(escape, axis=0).format_index(escape, axis=1)
    body = styler.to_latex(hrules=True, multicol_align="c", multirow_align="t",
                           column_format="l" * text.index.nlevels + "r" * len(text.columns))
    body = with_cmidrules(body, text)
    if report.spec.layout == "stacked":  # a rule between the datasets' blocks
        body = re.sub(r"^(\\multirow\[t\]\{\d+\}\{\*\}\{)", r"\\midrule\n\1", body, flags=re.M).replace(
            "\\midrule\n\\midrule", "\\midrule", 1)
    elif report.spec.paper_rows == "separate":  # a rule above the block of paper rows
        body = re.sub(r"^(\\multirow\[t\]\{\d+\}\{\*\}\{Paper\}|Paper &)", r"\\midrule\n\1", body, count=1,
                      flags=re.M)
    return body


def aligned(cells: List[str], marks: List[str]) -> List[str]:
    """A column's numbers aligned on the decimal point without a package: in a right-aligned column
    the points line up when every cell's tail (point, fraction, std, marks) is as wide as the widest,
    so each tail is padded with a phantom (the integer parts of stds after a ± alike); a bold number
    is ``\\benchbold`` (:data:`BOLD`), drawn over the room of its regular-weight digits, so a bold row
    is no wider than the others."""
    parsed = [NUMBER.fullmatch(c) if c else None for c in cells]
    numbers = [m for m in parsed if m]
    if not numbers:
        return [wrapped(c, mark) for c, mark in zip(cells, marks)]
    stds = [len(s[2]) for m in numbers for s in [STD.search(m["rest"])] if s]
    tails = [padded_std(m["point"] or "", m["frac"], m["rest"], max(stds, default=0)) if m else None
             for m in parsed]
    shapes = list(dict.fromkeys(shape(t) for t in tails if t is not None))
    longest = max(shapes, key=len)
    out = []
    for cell, m, tail, mark in zip(cells, parsed, tails, marks):
        if m is None:  # a dash or a blank: where the integer parts end
            out.append(f"{wrapped(cell, mark)}\\phantom{{{longest}}}" if cell else "")
            continue
        number = (m["sign"] or "") + m["int"] + (m["point"] or "")
        rest = tail[len(m["point"] or "") + len(m["frac"]):]
        head = (f"\\benchbold{{{number}}}{{{m['frac']}}}" if mark == "bold"
                else wrapped(number + m["frac"], mark))
        if all(longest.startswith(other) for other in shapes):  # the widest tail is the longest: pad to it
            out.append(head + rest + (f"\\phantom{{{longest[len(shape(tail)):]}}}" if shape(tail) != longest else ""))
        else:  # tails of other shapes: a box as wide as the widest of them
            stack = "".join(f"{s}\\hfil\\cr " for s in shapes)
            out.append(head + f"\\rlap{{{rest}}}\\phantom{{\\ooalign{{{stack}}}}}")
    return out


def padded_std(point: str, frac: str, rest: str, digits: int) -> str:
    """The cell's tail (point, fraction and the rest) with its std's integer part padded to ``digits``."""
    return point + frac + STD.sub(lambda s: s[1] + "\\phantom{" + "0" * (digits - len(s[2])) + "}" + s[2]
                                  if len(s[2]) < digits else s[0], rest)


def shape(tail: str) -> str:
    """What a tail's width depends on: its digits all as wide as 0, a minus as wide as a plus, a
    phantom as wide as what it hides."""
    tail = re.sub(r"\\phantom\{((?:[^{}]|\{[^{}]*\})*)\}", r"\1", tail)
    return re.sub(r"\d", "0", tail).replace("$-$", "+")


def wrapped(cell: str, mark: str) -> str:
    return {"bold": f"\\textbf{{{cell}}}", "underline": f"\\underline{{{cell}}}"}.get(mark, cell) if cell else cell


def stack_panels(tabulars: List[str]) -> str:
    """Panels in one tabular, each with its own header, a double rule between them (as LAMP prints its
    Table 1); the panels have equal column counts (render pads the last)."""
    if len(tabulars) == 1:
        return tabulars[0]
    inner = [t.split("\\toprule\n", 1)[1].rsplit("\\bottomrule", 1)[0] for t in tabulars]
    head = tabulars[0].split("\\toprule\n", 1)[0]
    return head + "\\toprule\n" + "\\midrule\\midrule\n".join(inner) + "\\bottomrule\n\\end{tabular}\n"


def fitted(body: str, fit: Optional[str], turned: bool = False) -> str:
    """The tabular inside an adjustbox that shrinks it only when it is wider than the line or taller
    than most of the page (``fit`` set; ``turned``: a sideways table, whose width runs along the
    page's height); as it is otherwise."""
    if fit not in ("textwidth", "landscape"):
        return body
    limits = "max width=\\textheight, max totalheight=0.9\\textwidth" if turned else \
        "max width=\\linewidth, max totalheight=0.8\\textheight"
    body = body.replace("\\begin{tabular}", f"\\begin{{adjustbox}}{{{limits}}}\n\\begin{{tabular}}", 1)
    return body.replace("\\end{tabular}", "\\end{tabular}\n\\end{adjustbox}", 1)


def slug(title: str) -> str:
    """A file-name part for a companion table: "Paired tests against coop" -> "paired-tests",
    "Friedman over 11 protocols: ..." -> "friedman", "95% intervals of ..." -> "intervals"."""
    words = re.findall(r"[a-z]+", title.lower()) or ["table"]
    return "-".join(words[:2]) if words[0] in ("paired", "pairwise") else words[0]


def document(body: str, fit: Optional[str] = None) -> str:
    """A complete article with the packages the tables need."""
    return "\\documentclass{article}\n" + preamble(fit, body) + "\\begin{document}\n" + body + "\n\\end{document}\n"
