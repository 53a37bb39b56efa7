"""The `bench` command: list, show, run, leaderboard, report (and data, kb)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from .errors import BenchError, one_line
from .registry import METHODS


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (exit code 2)."""

    def error(self, message):
        self.exit(2, f"bench: error: {one_line(message)} (see '{self.prog} --help')\n")


def parse_overrides(items: List[str]) -> Dict[str, dict]:
    """``["coop.n_ctx=4", "coop.train.lr=0.01"]`` -> ``{"coop": {"n_ctx": 4, "train": {"lr": 0.01}}}``
    (values read as YAML)."""
    out: Dict[str, dict] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        parts = target.split(".")
        nested = len(parts) == 3 and parts[1] == "train"
        if not sep or not all(parts) or not (len(parts) == 2 or nested) or parts[-1] == "train":
            raise BenchError(f"--set '{item}': expected METHOD.FIELD=VALUE or METHOD.train.FIELD=VALUE, "
                             "e.g. coop.n_ctx=4 or coop.train.lr=0.01")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        except RecursionError:
            raise BenchError(f"--set '{target}': the value is nested too deeply") from None
        block = out.setdefault(parts[0], {})
        if nested:
            block = block.setdefault("train", {})
        block[parts[-1]] = value
    return out


def cmd_list(args) -> int:
    from .catalog import method_papers, protocol_descriptions, registrations

    registered = registrations()  # read from the source: no torch import, so this is fast
    papers = method_papers() if args.what in (None, "methods") else {}
    sections = [args.what] if args.what else ["methods", "protocols", "datasets", "backbones", "reports"]
    for section in sections:
        print(f"{section}:")
        rows = (protocol_descriptions() if section == "protocols" else report_titles() if section == "reports"
                else registered[section])
        if section == "methods":
            rows += [(f"<method>@{name}", text) for name, text in registered["variants"]]
        width = max(len(name) for name, _ in rows)
        for name, text in rows:
            print(f"  {name:<{width}}  {text}")
            if name in papers:
                print(f"  {'':<{width}}  paper: {papers[name]}")
    return 0


def report_titles() -> List[tuple]:
    """(name, title) of each report spec in reports/ (for `bench report`); unreadable ones say so."""
    from .catalog import available_reports, reports_dir

    rows = []
    for name in available_reports():
        try:
            title = yaml.safe_load((reports_dir() / f"{name}.yaml").read_text()).get("title", "")
        except (OSError, yaml.YAMLError, AttributeError):
            title = "(not a readable report spec)"
        rows.append((name, f"{title}  (bench report {name})"))
    return rows


def cmd_show(args) -> int:
    from .catalog import locate

    locate(args.protocol)  # an unknown name is reported before torch is imported
    from .protocol import load_protocol
    from .show import render

    protocol = load_protocol(args.protocol)
    methods = METHODS.names() if not args.method or args.method == ["all"] else list(dict.fromkeys(args.method))
    overrides = parse_overrides(args.set)
    for name in [*methods, *overrides]:
        METHODS.get(name)
        if name not in methods:
            raise BenchError(f"--set names method '{name}', which is not being shown")
    print(render(protocol, methods, overrides), end="")
    return 0


def cmd_run(args) -> int:
    from .catalog import locate, match_protocols, save_view

    names = match_protocols(args.protocol)  # an unknown name is reported before torch is imported
    from .protocol import load_protocol
    from .runner import RunOptions, Runner

    protocols = [load_protocol(name) for name in names]  # every file is checked before anything runs
    methods = METHODS.names() if args.method == ["all"] else list(dict.fromkeys(args.method))
    for name in methods:
        METHODS.get(name)
    if not args.results_dir.strip():
        raise BenchError("--results-dir: must not be empty (default: results)")
    options = RunOptions(
        results_dir=Path(args.results_dir),
        device=args.device,
        data_root=args.data_root,
        progress=not args.no_progress and sys.stderr.isatty(),
        threads=args.threads,
        overrides=parse_overrides(args.set),
    )
    runners = [Runner(protocol, options) for protocol in protocols]
    if len(runners) > 1:
        print(f"bench: running {len(runners)} protocols: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}")
        for runner in runners:  # a missing dataset of the last table cell fails now, not hours in
            runner.check_data()
    for name, runner in zip(names, runners):
        runner.run(methods, args.seeds, skip_unfit=args.method == ["all"])
        path, cell = locate(name)
        save_view(path, runner.protocol.view(), cell or "")  # so the leaderboard need not import torch
    return 0


def write_output(path: Path, text: str, results_dir: Path) -> None:
    """Write a table to a regular file (a symlink's target), never over a device, folder or result."""
    from .atomic import write_atomic

    try:
        target = path.resolve()
        if target.is_dir():
            raise BenchError(f"--output '{path}' is a folder; give a file name, e.g. {path / 'table.md'}")
        if target.exists() and not target.is_file():
            raise BenchError(f"--output '{path}' is not a regular file; give a file name")
        if results_dir.resolve() in target.parents and target.suffix in (".json", ".ckpt"):
            raise BenchError(f"--output '{path}' would replace a result or checkpoint; write tables elsewhere")
        write_atomic(target, lambda f: f.write(text))
    except OSError as err:
        raise BenchError(f"--output '{path}': cannot write it ({err.strerror or type(err).__name__})") from None


def whole(low: int, high: int):
    """An argparse type: a whole number in [low, high]."""
    def parse(text: str) -> int:
        value = int(text) if text.lstrip("+").isdigit() and len(text) < 20 else -1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got '{text}'")
        return value
    return parse


def protocol_view(name_or_path: str) -> dict:
    """The protocol's view (bench.catalog), computed and cached on a miss."""
    from .catalog import load_view, locate, save_view

    path, cell = locate(name_or_path)
    view = load_view(path, cell or "")
    if view is None:
        from .protocol import load_protocol

        view = load_protocol(name_or_path).view()
        save_view(path, view, cell or "")
    return view


def protocol_rows(name_or_path: str, args, version: str) -> tuple:
    """(view, rows of the current configuration, records of other configurations) of one protocol."""
    from .leaderboard import aggregate, config_label, split_by_config
    from .store import ResultStore

    view = protocol_view(name_or_path)
    records = ResultStore(args.results_dir).records(view["name"])
    current, other = split_by_config(records, view["identity"], version)
    shown = records if args.all_configs else current
    labels = {r["key"]: config_label(r, view["identity"], version, view["references"]) for r in shown}
    return view, aggregate(shown, labels), other


def cmd_leaderboard(args) -> int:
    from . import __version__
    from .catalog import match_protocols
    from .leaderboard import across_protocols, markdown_table

    names = match_protocols(args.protocol)
    tables, views, others = {}, {}, 0
    for name in names:
        view, rows, other = protocol_rows(name, args, __version__)
        if rows:
            tables[view["name"]], views[view["name"]] = rows, view
        others += len(other)
    if not tables:
        hint = f" ({others} of other configurations: --all-configs shows them)" if others else ""
        raise BenchError(f"no results for protocol '{args.protocol}' as configured now under "
                         f"'{args.results_dir}'{hint}; run: bench run --protocol {args.protocol} --method all")
    if len(names) > 1:
        table = across_protocols(tables, digits=args.digits)
        title = f"## {args.protocol}\n\n{len(tables)} of {len(names)} protocols have results.\n\n"
    else:
        (name, rows), = tables.items()
        table = markdown_table(rows, digits=args.digits)
        title = f"## {name}\n\n{views[name]['description']}\n\n"
    text = (title if args.title else "") + table + "\n"
    if args.output is not None:
        if not args.output.strip():
            raise BenchError("--output: must not be empty")
        write_output(Path(args.output), text, Path(args.results_dir))
    print(text, end="")
    if others and not args.all_configs:
        print(f"bench: note: {others} result(s) of other configurations or code versions of "
              f"'{args.protocol}' are not shown; --all-configs shows them", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from . import __version__
    from .errors import warn
    from .plugins import load_builtins
    from .render import render
    from .report import build_report
    from .reportspec import load_spec
    from .results import load_results

    spec = load_spec(args.spec)
    results = load_results(args.results_dir)
    for line in results.problems[:5] + [f"left out, conflicting copies: {c}" for c in results.conflicts[:5]]:
        warn(line)
    if len(results.problems) > 5 or len(results.conflicts) > 5:
        warn(f"{len(results.problems)} unreadable file(s) and {len(results.conflicts)} conflict(s) in all")
    load_builtins()
    cards = {name: METHODS.get(name).card for name in METHODS.names()}
    report = build_report(spec, results, protocol_view, __version__, cards)
    text = render(report, args.format)
    if args.plots is not None:
        from .plots import write_plots

        written = write_plots(report, args.plots, args.plot_format)
        print(f"bench: wrote {len(written)} figure(s) to '{args.plots}'", file=sys.stderr)
    if args.output is not None:
        if not args.output.strip():
            raise BenchError("--output: must not be empty")
        write_output(Path(args.output), text, Path(args.results_dir[0]))
    else:
        print(text, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("list", help="list methods, protocols, datasets and backbones")
    p.add_argument("what", nargs="?", choices=["methods", "protocols", "datasets", "backbones", "reports"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="a protocol and each method's resolved recipe, with its sources")
    p.add_argument("protocol", help="protocol name (see `bench list`) or YAML path")
    p.add_argument("--method", nargs="+", help="methods to show (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                   help="show the recipe with this override, as `bench run --set` would run it")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("run", help="run methods on a protocol (finished cells are skipped)")
    p.add_argument("--protocol", required=True, help="protocol name (see `bench list`) or YAML path")
    p.add_argument("--method", required=True, nargs="+", help="method names, or 'all'")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the protocol's)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                   help="override a method option or training field, e.g. coop.n_ctx=4, "
                        "coop.train.lr=0.01 (repeatable)")
    p.add_argument("--results-dir", default="results", help="where result JSON files go (default: results)")
    p.add_argument("--data-root", help="dataset folder (overrides the protocol's dataset.root)")
    p.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars: one line per epoch instead")
    p.add_argument("--threads", type=whole(1, 1024), help="CPU threads for torch (default: usable CPUs - 1, at least 1)")
    p.set_defaults(func=cmd_run)

    from .datacmd import add_parser as add_data_parser

    add_data_parser(sub)

    from .kbcmd import add_parser as add_kb_parser

    add_kb_parser(sub)

    p = sub.add_parser("leaderboard", help="markdown table of mean ± std across seeds")
    p.add_argument("--protocol", required=True, help="protocol name, YAML path, or a table (b2n_cpt, a glob): one row per method, its average")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--output", help="also write the table to this file (e.g. reports/smoke.md)")
    p.add_argument("--digits", type=whole(0, 10), default=2, help="decimal places (default: 2)")
    p.add_argument("--title", action="store_true", help="precede the table with the protocol's name and description")
    p.add_argument("--all-configs", action="store_true",
                   help="also rows of other configurations and code versions of this protocol, labelled by what differs")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("report", help="a paper table from a report spec: mean ± std, marks, tests, paper numbers")
    p.add_argument("spec", help="a report in reports/ (e.g. leaderboard, mdpr_cifar100_lt) or a YAML path")
    p.add_argument("--results-dir", nargs="+", default=["results"],
                   help="results folders to merge, e.g. one per machine (default: results)")
    p.add_argument("--format", choices=["md", "latex", "html"], default="md")
    p.add_argument("--output", help="write the report to this file instead of printing it")
    p.add_argument("--plots", metavar="DIR", help="also draw the long-tail curves, Many/Medium/Few bars and "
                                                   "a critical-difference diagram into DIR")
    p.add_argument("--plot-format", choices=["png", "pdf"], default="png")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed as one line
        return int(done.code or 0)
    try:
        return args.func(args)
    except BenchError as err:
        print(f"bench: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; finished results are saved and a re-run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
