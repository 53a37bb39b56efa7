"""`bench list [methods|protocols|datasets|backbones|reports]`: what ships, read without torch."""
from __future__ import annotations

from typing import List

import yaml


def cmd_list(args) -> int:
    from bench.config.catalog import method_papers, protocol_descriptions, registrations

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
    from bench.config.catalog import available_reports, reports_dir

    rows = []
    for name in available_reports():
        try:
            title = yaml.safe_load((reports_dir() / f"{name}.yaml").read_text()).get("title", "")
        except (OSError, yaml.YAMLError, AttributeError):
            title = "(not a readable report spec)"
        rows.append((name, f"{title}  (bench report {name})"))
    return rows


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list methods, protocols, datasets and backbones")
    p.add_argument("what", nargs="?", choices=["methods", "protocols", "datasets", "backbones", "reports"])
    p.set_defaults(func=cmd_list)
