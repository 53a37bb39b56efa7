"""`bench list [methods|protocols|datasets|backbones|reports|seeds]`: what ships, read without torch, and
what plugins add (each method, dataset and backbone with its origin: built-in or the plugin); ``seeds``:
each table and figure of the seed papers and the report that renders it."""
from __future__ import annotations

from typing import Dict, List, Tuple

from bench.core.errors import BenchError
from bench.core.safeyaml import load_yaml

from .common import add_plugin_option


def cmd_list(args) -> int:
    from bench.config.catalog import protocol_descriptions

    registered, papers = registrations(args.what in (None, "methods"))
    sections = [args.what] if args.what else ["methods", "protocols", "datasets", "backbones", "reports", "seeds"]
    for section in sections:
        print(f"{section}:")
        if section == "seeds":
            from bench.reporting.coverage import coverage_lines

            print("\n".join(f"  {line}" for line in coverage_lines()))
        elif section in registered:
            rows = list(registered[section])
            if section == "methods":  # then the variants, and the systems only their papers' numbers stand for
                rows += [(f"<method>@{name}", text, origin) for name, text, origin in registered["variants"]]
                rows += [(name, text, "reported only") for name, text, _ in registered["reported"]]
            name_width, origin_width = (max(len(row[i]) for row in rows) for i in (0, 2))
            print_rows([(f"{name:<{name_width}}  {origin:<{origin_width}}", text, name) for name, text, origin in rows],
                       papers)
        else:
            print_rows([(name, text, name) for name, text in
                        (protocol_descriptions() if section == "protocols" else report_titles())], papers)
    return 0


def print_rows(rows: List[Tuple[str, str, str]], papers: Dict[str, str]) -> None:
    """``(label, text, name)`` rows, and under a method's the paper of its card."""
    width = max(len(label) for label, _, _ in rows)
    for label, text, key in rows:
        print(f"  {label:<{width}}  {text}")
        if key in papers:
            print(f"  {'':<{width}}  paper: {papers[key]}")


def registrations(with_papers: bool) -> Tuple[Dict[str, list], Dict[str, str]]:
    """kind -> ``(name, description, origin)`` rows, and each method's paper.  Without plugins they
    are read from the source (no torch import, so this is fast); with plugins, from the registries."""
    from bench import plugins
    from bench.core.registry import BUILT_IN, describe, origin_label

    if not plugins.any_plugins():
        from bench.config.catalog import method_papers, registrations as from_source

        found = {kind: [(name, text, origin_label(BUILT_IN)) for name, text in rows]
                 for kind, rows in from_source().items()}
        return found, method_papers() if with_papers else {}
    plugins.load_all()
    found = {kind: [(name, describe(entry) or "", origin_label(registry.origin(name))) for name, entry in registry.items()]
             for kind, registry in plugins.REGISTRIES.items()}
    entries = [*plugins.REGISTRIES["methods"].items(), *plugins.REGISTRIES["reported"].items()]
    return found, {name: cls.card.paper for name, cls in entries if getattr(cls, "card", None)}


def report_titles() -> List[tuple]:
    """(name, title) of each report spec in reports/ (for `bench report`); unreadable ones say so."""
    from bench.config.catalog import available_reports, reports_dir

    rows = []
    for name in available_reports():
        try:
            title = load_yaml((reports_dir() / f"{name}.yaml").read_text(), name).get("title", "")
        except (OSError, UnicodeDecodeError, BenchError, AttributeError):
            title = "(not a readable report spec)"
        rows.append((name, f"{title}  (bench report {name})"))
    return rows


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list methods, protocols, datasets, backbones, reports, and the seed papers' "
                                    "tables and figures with the report of each")
    p.add_argument("what", nargs="?", choices=["methods", "protocols", "datasets", "backbones", "reports", "seeds"])
    add_plugin_option(p)
    p.set_defaults(func=cmd_list)
