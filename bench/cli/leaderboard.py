"""`bench leaderboard`: mean ± std across seeds, one row per method (and config)."""
from __future__ import annotations

import sys
from pathlib import Path

from bench.core.errors import BenchError

from .common import add_plugin_option, whole, write_output


def protocol_view(name_or_path: str) -> dict:
    """The protocol's view (bench.config.catalog), computed and cached on a miss."""
    from bench.config.catalog import load_view, locate, save_view
    from bench.plugins import fingerprint

    path, cell, plugins = *locate(name_or_path), fingerprint()  # the plugins' sources are read once
    view = load_view(path, cell or "", plugins)
    if view is None:
        from bench.config.protocol import load_protocol

        view = load_protocol(name_or_path).view()
        save_view(path, view, cell or "", plugins)
    return view


def protocol_rows(name_or_path: str, args, version: str) -> tuple:
    """(view, rows of the current configuration, records of other configurations) of one protocol."""
    from bench.reporting.leaderboard import aggregate, config_label, split_by_config
    from bench.engine.store import ResultStore

    view = protocol_view(name_or_path)
    records = ResultStore(args.results_dir).records(view["name"])
    current, other = split_by_config(records, view["identity"], version, view.get("code_versions"))
    shown = records if args.all_configs else current
    labels = {r["key"]: config_label(r, view["identity"], version, view["references"], view.get("code_versions"))
              for r in shown}
    return view, aggregate(shown, labels), other


def cmd_leaderboard(args) -> int:
    from bench import __version__
    from bench.config.catalog import match_protocols
    from bench.reporting.leaderboard import across_protocols, markdown_table

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


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="markdown table of mean ± std across seeds")
    p.add_argument("--protocol", required=True, help="protocol name, YAML path, or a table (b2n_cpt, a glob): one row per method, its average")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--output", help="also write the table to this file (e.g. reports/smoke.md)")
    p.add_argument("--digits", type=whole(0, 10), default=2, help="decimal places (default: 2)")
    p.add_argument("--title", action="store_true", help="precede the table with the protocol's name and description")
    p.add_argument("--all-configs", action="store_true",
                   help="also rows of other configurations and code versions of this protocol, labelled by what differs")
    add_plugin_option(p)
    p.set_defaults(func=cmd_leaderboard)
