"""`bench leaderboard`: mean ± std across seeds, one row per method (and config)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from bench.core.errors import BenchError, warn

from .common import add_plugin_option, protocol_sets, whole, write_output


SEEDS_HINT = "--set protocol.seeds=[...] counts them"


def protocol_view(name_or_path: str, overrides: Optional[dict] = None) -> dict:
    """The protocol's view (bench.config.catalog) with ``overrides`` in place, computed and cached on a miss."""
    from bench.config.catalog import load_view, locate, save_view
    from bench.config.overrides import fingerprint as overrides_fingerprint
    from bench.plugins import fingerprint

    path, cell, plugins = *locate(name_or_path), fingerprint()  # the plugins' sources are read once
    changed = overrides_fingerprint(overrides or {})
    view = load_view(path, cell or "", plugins, changed)
    if view is None:
        from bench.config.protocol import load_protocol

        view = load_protocol(name_or_path, overrides).view()
        save_view(path, view, cell or "", plugins, changed)
    return view


def folder_records(folders: List[str], protocol: str) -> List[dict]:
    """Every readable, usable record of ``protocol`` under the results folders: a cell found in several is
    kept once when its metrics agree, and left out with a warning when they do not (as ``bench report`` merges)."""
    from bench.engine.store import ResultStore
    from bench.reporting.leaderboard import leaderboard_problem
    from bench.reporting.results import merge

    found = []
    for folder in folders:
        store = ResultStore(folder)
        for record in store.records(protocol):
            problem = leaderboard_problem(record)
            if problem is None:
                found.append((folder, record))
            else:
                path = store.result_path(record["protocol"], record["method"], record["key"], record["seed"])
                warn(f"skipped '{path}': it {problem}")
    kept, conflicts, _ = merge(found)
    for conflict in conflicts:
        warn(f"left out, conflicting copies: {conflict}")
    return [record for _, record in kept]


def protocol_rows(name_or_path: str, args, version: str, overrides: Optional[dict] = None) -> tuple:
    """(view, rows of the current configuration, records of other configurations) of one protocol;
    results of seeds that are not the protocol's are left out with a note, as `bench report` leaves them."""
    from bench.reporting.leaderboard import aggregate, config_label, other_seeds, split_by_config

    view = protocol_view(name_or_path, overrides)
    records = folder_records(args.results_dir, view["name"])
    seeds = {view["name"]: view["seeds"]}
    for note in other_seeds(((r["protocol"], r["seed"]) for r in records), seeds, SEEDS_HINT):
        print(f"bench: note: {note}", file=sys.stderr)
    records = [r for r in records if r["seed"] in view["seeds"]]
    current, other = split_by_config(records, view["identity"], version, view.get("code_versions"))
    shown = records if args.all_configs else current
    labels = {r["key"]: config_label(r, view["identity"], version, view["references"], view.get("code_versions"))
              for r in shown}
    return view, aggregate(shown, labels), other


def cmd_leaderboard(args) -> int:
    from bench import __version__
    from bench.config.catalog import match_protocols
    from bench.reporting.leaderboard import across_protocols, markdown_table

    from bench.config.overrides import describe, reference

    names = match_protocols(args.protocol)
    sets = protocol_sets(args.set)
    tables, views, others = {}, {}, []
    for name in names:
        view, rows, other = protocol_rows(name, args, __version__, sets)
        if rows:
            tables[view["name"]], views[view["name"]] = rows, view
        others += other
    shown = reference(args.protocol, sets)
    if not tables:
        from bench.reporting.leaderboard import why_not_current

        every = {view["name"]: view for view in (protocol_view(n, sets) for n in names)}
        hint = f"; {why_not_current(others, every, __version__)}" if others else ""
        run = f"bench run --protocol {args.protocol} --method all" + "".join(f" --set {s}" for s in args.set)
        raise BenchError(f"no results for protocol '{shown}' as configured now under "
                         f"{', '.join(map(repr, args.results_dir))}{hint}; run: {run}")
    changed = f" ({describe(sets)})" if sets else ""
    if len(names) > 1:
        table = across_protocols(tables, digits=args.digits)
        title = f"## {args.protocol}{changed}\n\n{len(tables)} of {len(names)} protocols have results.\n\n"
    else:
        (name, rows), = tables.items()
        table = markdown_table(rows, digits=args.digits)
        title = f"## {name}{changed}\n\n{views[name]['description']}\n\n"
    text = (title if args.title else "") + table + "\n"
    if args.output is not None:
        if not args.output.strip():
            raise BenchError("--output: must not be empty")
        write_output(Path(args.output), text, Path(args.results_dir[0]))
    print(text, end="")
    if others and not args.all_configs:
        hidden_notes(others, views, args.protocol)
    return 0


def hidden_notes(others: List[dict], views: dict, protocol: str) -> None:
    """``bench: note:`` lines for results not shown: each method not loaded, and the other configurations."""
    from bench.reporting.leaderboard import not_loaded, not_loaded_notes

    for note in not_loaded_notes(others, views):
        print(f"bench: note: {note}", file=sys.stderr)
    rest = [record for record in others if not not_loaded(record, views)]
    if rest:
        print(f"bench: note: {len(rest)} result(s) of other configurations or code versions of "
              f"'{protocol}' are not shown; --all-configs shows them", file=sys.stderr)


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="markdown table of mean ± std across seeds")
    p.add_argument("--protocol", required=True, help="protocol name, YAML path, or a table (b2n_cpt, a glob): one row per method, its average")
    p.add_argument("--results-dir", nargs="+", default=["results"],
                   help="results folders to merge, e.g. one per machine (default: results)")
    p.add_argument("--set", action="append", default=[], metavar="protocol.PATH=VALUE",
                   help="the protocol as run with this override, e.g. protocol.backbone.model=RN50 (repeatable)")
    p.add_argument("--output", help="also write the table to this file (e.g. smoke.md)")
    p.add_argument("--digits", type=whole(0, 10), default=2, help="decimal places (default: 2)")
    p.add_argument("--title", action="store_true", help="precede the table with the protocol's name and description")
    p.add_argument("--all-configs", action="store_true",
                   help="also rows of other configurations and code versions of this protocol, labelled by what differs")
    add_plugin_option(p)
    p.set_defaults(func=cmd_leaderboard)
