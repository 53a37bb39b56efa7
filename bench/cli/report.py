"""`bench report SPEC`: a paper table from a report spec (mean ± std, marks, tests, paper numbers)."""
from __future__ import annotations

import sys
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.registry import METHODS

from .common import add_plugin_option, write_output
from .leaderboard import protocol_view


def cmd_report(args) -> int:
    from bench import __version__
    from bench.core.errors import warn
    from bench.plugins import load_all
    from bench.reporting.render import render
    from bench.reporting.report import build_report
    from bench.reporting.reportspec import load_spec
    from bench.reporting.results import load_results

    spec = load_spec(args.spec)
    results = load_results(args.results_dir)
    for line in results.problems[:5] + [f"left out, conflicting copies: {c}" for c in results.conflicts[:5]]:
        warn(line)
    if len(results.problems) > 5 or len(results.conflicts) > 5:
        warn(f"{len(results.problems)} unreadable file(s) and {len(results.conflicts)} conflict(s) in all")
    load_all()
    cards = {name: METHODS.get(name).card for name in METHODS.names()}
    report = build_report(spec, results, protocol_view, __version__, cards)
    text = render(report, args.format)
    if args.plots is not None:
        from bench.reporting.plots import write_plots

        written = write_plots(report, args.plots, args.plot_format)
        print(f"bench: wrote {len(written)} figure(s) to '{args.plots}'", file=sys.stderr)
    if args.output is not None:
        if not args.output.strip():
            raise BenchError("--output: must not be empty")
        write_output(Path(args.output), text, Path(args.results_dir[0]))
    else:
        print(text, end="")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="a paper table from a report spec: mean ± std, marks, tests, paper numbers")
    p.add_argument("spec", help="a report in reports/ (e.g. leaderboard, mdpr_cifar100_lt) or a YAML path")
    p.add_argument("--results-dir", nargs="+", default=["results"],
                   help="results folders to merge, e.g. one per machine (default: results)")
    p.add_argument("--format", choices=["md", "latex", "html"], default="md")
    p.add_argument("--output", help="write the report to this file instead of printing it")
    p.add_argument("--plots", metavar="DIR", help="also draw the long-tail curves, Many/Medium/Few bars and "
                                                   "a critical-difference diagram into DIR")
    p.add_argument("--plot-format", choices=["png", "pdf"], default="png")
    add_plugin_option(p)
    p.set_defaults(func=cmd_report)
