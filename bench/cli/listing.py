"""`bench list [methods|protocols|datasets|backbones|reports|seeds]`: what ships, read without torch, and
what plugins add (each method, dataset and backbone with its origin: built-in or the plugin); ``seeds``:
each table and figure of the seed papers and the report that renders it."""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Tuple

from bench.core.errors import BenchError
from bench.core.safeyaml import load_yaml

from .common import add_plugin_option


def cmd_list(args) -> int:
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
                       {name: f"paper: {paper}" for name, paper in papers.items()})
        else:
            rows, notes = protocol_rows(args.all) if section == "protocols" else (report_titles(), {})
            print_rows([(name, text, name) for name, text in rows], notes)
            if section == "protocols" and not args.all:
                print("  (a <field> row is a grid file's protocols: bench list protocols --all names each)")
    return 0


def print_rows(rows: List[Tuple[str, str, str]], notes: Dict[str, str]) -> None:
    """``(label, text, name)`` rows, and under a row its note (a method's paper, a grid's labels)."""
    width = max(len(label) for label, _, _ in rows)
    for label, text, key in rows:
        print(f"  {label:<{width}}  {text}")
        if key in notes:
            print(f"  {'':<{width}}  {notes[key]}")


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


def protocol_rows(every_cell: bool) -> Tuple[List[Tuple[str, str]], Dict[str, str]]:
    """``(name, description)`` of each protocol, a grid file's cells folded into one row
    (``b2n_lamp/<dataset>/<imb_ratio>``, noted with its labels) unless ``every_cell``; and the notes."""
    from bench.config.catalog import protocol_descriptions

    rows = protocol_descriptions()
    if every_cell:
        return rows, {}
    cells = Counter(name.split("/", 1)[0] for name, _ in rows if "/" in name)
    folded, notes = [], {}
    for name, text in rows:  # in the catalog's order, each grid where its first cell is
        stem = name.split("/", 1)[0]
        if "/" not in name:
            folded.append((name, text))
        elif stem in cells:
            pattern, text, notes[pattern] = grid_row(stem, cells.pop(stem))
            folded.append((pattern, text))
    return folded, notes


def grid_row(stem: str, count: int) -> Tuple[str, str, str]:
    """One grid file's name pattern, its description (placeholders kept) and its labels."""
    from bench.config.catalog import protocols_dir
    from bench.config.grid import axes

    data = load_yaml((protocols_dir() / f"{stem}.yaml").read_text(), stem)  # a valid grid: its cells were listed
    grid = [(path.rsplit(".", 1)[-1], [label for label, _ in values]) for path, values in axes(data["grid"])]
    pattern = "/".join([stem, *(f"<{name}>" for name, _ in grid)])
    labels = "; ".join(f"{name}: {' '.join(values)}" for name, values in grid)
    return pattern, f"{count} protocol{'s' * (count != 1)}: {data.get('description', '')}", labels


def report_titles() -> List[tuple]:
    """(name, title) of each report spec in bench/reports/ (for `bench report`); unreadable ones say so."""
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
    p.add_argument("--all", action="store_true",
                   help="every protocol of a grid file by name (default: one line per grid file)")
    add_plugin_option(p)
    p.set_defaults(func=cmd_list)
