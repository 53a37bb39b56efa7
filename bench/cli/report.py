"""`bench report SPEC`: a paper table from a report spec (mean ± std, marks, tests, paper numbers)."""
from __future__ import annotations

import sys
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.registry import METHODS

from .common import add_plugin_option, protocol_sets, write_output
from .leaderboard import protocol_view


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
    from bench.plugins import load_all
    from bench.reporting.render import render, render_files
    from bench.reporting.report import build_report
    from bench.reporting.reportspec import load_spec
    from bench.reporting.results import load_results

    if args.format != "latex" and (args.fit or args.standalone):
        raise BenchError("--fit and --standalone shape LaTeX; add --format latex")
    spec = load_spec(args.spec)
    results = load_results(args.results_dir)
    for line in results.problems[:5] + [f"left out, conflicting copies: {c}" for c in results.conflicts[:5]]:
        warn(line)
    if len(results.problems) > 5 or len(results.conflicts) > 5:
        warn(f"{len(results.problems)} unreadable file(s) and {len(results.conflicts)} conflict(s) in all")
    load_all()
    cards = {name: METHODS.get(name).card for name in METHODS.names()}
    report = build_report(spec, results, protocol_view, __version__, cards, protocol_sets(args.set))
    if not any(cell.values for cell in report.cells.values()):
        raise BenchError(f"report '{args.spec}' has no numbers: " + "; ".join(report.unmatched or [
            "no result matches its rows and columns"]))
    for line in report.unmatched:
        warn(line)
    if args.plots is not None:
        from bench.reporting.plots import write_plots

        written = write_plots(report, args.plots, args.plot_format,
                              log=lambda line: print(f"bench: note: {line}", file=sys.stderr))
        print(f"bench: wrote {len(written)} figure(s) to '{args.plots}'", file=sys.stderr)
    if args.output is None:
        print(render(report, args.format, args.fit, args.standalone), end="")
        return 0
    if not args.output.strip():
        raise BenchError("--output: must not be empty")
    files = render_files(report, args.format, args.fit, args.standalone, split=True)
    for path, text in output_paths(Path(args.output), spec_name(args.spec), args.format, files).items():
        write_output(path, text, Path(args.results_dir[0]))
        print(f"bench: wrote '{path}'", file=sys.stderr)
    return 0


SUFFIX = {"md": ".md", "latex": ".tex", "html": ".html"}


def spec_name(spec: str) -> str:
    return Path(spec).stem


def output_paths(output: Path, name: str, fmt: str, files: dict) -> dict:
    """Where each file goes: ``--output`` a folder (ends with '/' or exists as one) holds ``<spec>.tex``
    and ``<spec>-<companion>.tex``; a file ``out/table.tex`` (or a stem ``out/table``) is the main table,
    with ``out/table-<companion>.tex`` beside it."""
    if str(output).endswith(("/", "\\")) or output.is_dir():
        output = output / name
    suffix = output.suffix or SUFFIX[fmt]
    stem = output.stem if output.suffix else output.name
    return {output.with_name(f"{stem}-{part}{suffix}" if part else f"{stem}{suffix}"): text
            for part, text in files.items()}


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="a paper table from a report spec: mean ± std, marks, tests, paper numbers")
    p.add_argument("spec", help="a report in reports/ (e.g. leaderboard, mdpr_cifar100_lt) or a YAML path")
    p.add_argument("--results-dir", nargs="+", default=["results"],
                   help="results folders to merge, e.g. one per machine (default: results)")
    p.add_argument("--set", action="append", default=[], metavar="protocol.PATH=VALUE",
                   help="every column's protocol as run with this override, e.g. protocol.backbone.model=ViT-B-32 "
                        "(repeatable; a column's own `set:` wins)")
    p.add_argument("--format", choices=["md", "latex", "html"], default="md")
    p.add_argument("--output", help="write the main table to this file (or FOLDER/, or a stem) and each companion "
                                    "table (paired tests, Friedman, intervals) to <stem>-<name> beside it")
    p.add_argument("--fit", choices=["textwidth", "landscape"],
                   help="LaTeX: shrink a table wider than the line (or taller than the page) to fit (adjustbox); "
                        "landscape also turns the main table sideways (rotating)")
    p.add_argument("--standalone", action="store_true",
                   help="LaTeX: complete documents (preamble included) that compile as they are")
    p.add_argument("--plots", metavar="DIR", help="also draw the long-tail curves, Many/Medium/Few bars and "
                                                   "a critical-difference diagram into DIR")
    p.add_argument("--plot-format", choices=["png", "pdf"], default="png")
    add_plugin_option(p)
    p.set_defaults(func=cmd_report)
