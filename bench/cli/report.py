"""`bench report SPEC`: a paper table from a report spec (mean ± std, marks, tests, paper numbers)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Tuple

from bench.core.errors import BenchError
from bench.core.registry import all_cards

from .common import add_plugin_option, protocol_sets, whole, write_output
from .leaderboard import protocol_view
from .report_cells import with_extra_rows


REPORT_EXTRA = ("pandas", "scipy", "jinja2", "tabulate")  # and matplotlib for --plots


def require_report_extra(plots: bool) -> None:
    """One line, before anything is read, when the ``report`` extra is not installed."""
    import importlib.util

    missing = [m for m in (*REPORT_EXTRA, *(["matplotlib"] if plots else [])) if importlib.util.find_spec(m) is None]
    if missing:
        raise BenchError(f"bench report needs the report extra (missing: {', '.join(missing)}): "
                         "pip install 'lt-prompt-bench[report]' (from a checkout: pip install -e '.[report]')")


def cmd_report(args) -> int:
    require_report_extra(args.plots is not None)
    from bench import __version__
    from bench.core.errors import warn
    from bench.reporting.render import render, render_files
    from bench.reporting.report import build_report
    from bench.reporting.reportspec import load_spec
    from bench.reporting.results import load_results

    if args.format != "latex" and (args.fit or args.standalone or args.float or args.font):
        raise BenchError("--fit, --standalone, --float and --font shape LaTeX; add --format latex")
    spec = with_page_options(load_spec(args.spec), args)
    results = load_results(args.results_dir)
    for line in results.problems[:5] + [f"left out, conflicting copies: {c}" for c in results.conflicts[:5]]:
        warn(line)
    if len(results.problems) > 5 or len(results.conflicts) > 5:
        warn(f"{len(results.problems)} unreadable file(s) and {len(results.conflicts)} conflict(s) in all")
    cards = method_cards()
    report = build_report(spec, results, protocol_view, __version__, cards, protocol_sets(args.set))
    if not any(cell.values for cell in report.cells.values()):
        extra = " (results of the spec's extra rows are shown with --rows all)" if spec.extra_rows else ""
        raise BenchError(f"report '{args.spec}' has no numbers: " + "; ".join(report.unmatched or [
            "no result matches its rows and columns"]) + extra)
    for line in report.unmatched:
        warn(line)
    for line in report.other_seeds:
        print(f"bench: note: {line}", file=sys.stderr)
    if args.plots is not None:
        draw(report, args)
    if args.output is None:
        print(render(report, args.format, args.fit, args.standalone), end="")
        return 0
    if not args.output.strip():
        raise BenchError("--output: must not be empty")
    stem = output_place(args.output, spec.name, args.format)[1]
    files = render_files(report, args.format, args.fit, args.standalone, split=True, stem=stem)
    for path, text in output_paths(args.output, spec.name, args.format, files).items():
        make_folder(path.parent)
        write_output(path, text, Path(args.results_dir[0]))
        print(f"bench: wrote '{path}'", file=sys.stderr)
    return 0


def draw(report, args) -> None:
    """``--plots DIR``: a figure spec's figure (PDF and PNG unless --plot-format says one), else the
    long-tail curves, Many/Medium/Few bars and critical-difference diagram the numbers allow."""
    formats = {"both": ("pdf", "png"), None: None}.get(args.plot_format, (args.plot_format,))
    if report.spec.figure is not None:
        from bench.reporting.figure_plots import write_figure

        written = write_figure(report, args.plots, formats or ("pdf", "png"), args.plot_width)
    else:
        from bench.reporting.plots import write_plots

        written = [path for fmt in formats or ("png",) for path in write_plots(
            report, args.plots, fmt, width=args.plot_width or "column",
            log=lambda line: print(f"bench: note: {line}", file=sys.stderr))]
    print(f"bench: wrote {len(written)} figure file(s) to '{args.plots}'", file=sys.stderr)


def method_cards() -> dict:
    """Every method's card, from the cache of this code and these plugins (torch is not imported), or
    read from the methods and cached on a miss."""
    from bench.config.catalog import load_cards, save_cards
    from bench.plugins import fingerprint, load_all

    plugins = fingerprint()
    cards = load_cards(plugins)
    if cards is None:
        load_all()
        cards = all_cards()
        save_cards(cards, plugins)
    return cards


SUFFIX = {"md": ".md", "latex": ".tex", "html": ".html"}
STD = {"true": True, "false": False, "subscript": "subscript"}


def with_page_options(spec, args):
    """The spec with the page options given on the command line in place of its own, and with its
    extra rows after the paper's under ``--rows all``."""
    import dataclasses

    given = {"float_env": args.float, "panels": args.panels, "notes": args.notes, "font": args.font,
             "std": STD.get(args.std)}
    spec = with_extra_rows(dataclasses.replace(spec, **{k: v for k, v in given.items() if v is not None}), args.rows)
    spec.validate("")
    return spec


def output_paths(output: str, name: str, fmt: str, files: dict) -> dict:
    """Where each file goes: ``--output`` a folder (ends with '/' or exists as one) holds ``<spec>.tex``
    and ``<spec>-<companion>.tex`` (the spec's whole name: ``cpt_b2n_tau0.25.tex``); a file
    ``out/table.tex`` (or a stem ``out/table``) is the main table, with ``out/table-<companion>.tex``
    beside it."""
    folder, stem, suffix = output_place(output, name, fmt)
    return {folder / (f"{stem}-{part}{suffix}" if part else f"{stem}{suffix}"): text for part, text in files.items()}


def output_place(output: str, name: str, fmt: str) -> Tuple[Path, str, str]:
    """``--output``'s (folder, file stem, suffix) for the main table."""
    output = str(output)
    if output.endswith(("/", "\\")) or Path(output).is_dir():
        return Path(output), name, SUFFIX[fmt]
    path = Path(output)  # a suffix of letters is the file's (table.tex, table.txt); '.25' of 'tau0.25' is the name's
    return (path.parent, path.stem, path.suffix) if path.suffix[1:].isalpha() else (path.parent, path.name, SUFFIX[fmt])


def make_folder(folder: Path) -> None:
    """``--output DIR/`` creates the folder (and its parents) when it is not there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BenchError(f"--output: cannot create the folder '{folder}' ({err.strerror or type(err).__name__})") \
            from None


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="a paper table from a report spec: mean ± std, marks, tests, paper numbers")
    p.add_argument("spec", help="a report in bench/reports/ (e.g. leaderboard, mdpr_cifar100_lt) or a YAML path")
    p.add_argument("--results-dir", nargs="+", default=["results"],
                   help="results folders to merge, e.g. one per machine (default: results)")
    p.add_argument("--set", action="append", default=[], metavar="protocol.PATH=VALUE",
                   help="every column's protocol as run with this override, e.g. protocol.backbone.model=ViT-B-32 "
                        "(repeatable; a column's own `set:` wins)")
    p.add_argument("--rows", choices=["paper", "all"], default="paper",
                   help="the rows the paper prints (default), or all: also the spec's extra_rows, methods we run "
                        "that the paper does not print (zero-shot, IVLP, ...)")
    p.add_argument("--format", choices=["md", "latex", "html"], default="md")
    p.add_argument("--output", help="write the main table to this file (or FOLDER/, or a stem) and each companion "
                                    "table (paired tests, Friedman, intervals) to <stem>-<name> beside it")
    p.add_argument("--fit", choices=["textwidth", "landscape"],
                   help="LaTeX: shrink a table wider than the line (or taller than the page) to fit (adjustbox); "
                        "landscape also turns the main table sideways (rotating)")
    p.add_argument("--float", choices=["table", "table*"],
                   help="LaTeX: one column (table) or both columns of a two-column page (table*); default: the spec's")
    p.add_argument("--panels", type=whole(1, 12), help="split the columns into N stacked panels (default: the spec's)")
    p.add_argument("--std", choices=list(STD), help="mean ± std (true), the std as a small subscript, or means only")
    p.add_argument("--notes", choices=["below", "inside", "none"],
                   help="the statistics notes: after the table, inside its float, or left out")
    p.add_argument("--font", choices=["normalsize", "small", "footnotesize", "scriptsize"],
                   help="LaTeX: the table's type size (10, 9, 8, 7 pt in a 10 pt paper); default: the spec's")
    p.add_argument("--standalone", action="store_true",
                   help="LaTeX: complete documents (preamble included) that compile as they are")
    p.add_argument("--plots", metavar="DIR", help="also draw into DIR: a figure spec's figure, else the long-tail "
                                                   "curves, Many/Medium/Few bars and critical-difference diagram")
    p.add_argument("--plot-format", choices=["png", "pdf", "both"],
                   help="the figures' format (default: a figure spec's figure as PDF and PNG, other plots PNG)")
    p.add_argument("--plot-width", choices=["column", "text"],
                   help="figures drawn at one column's width (3.3 in) or the text's (6.9 in), text at 7.5 pt "
                        "(default: a figure spec's own, else column)")
    add_plugin_option(p)
    p.set_defaults(func=cmd_report)
