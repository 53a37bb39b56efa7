"""``bench run --report SPEC`` (and ``plan``, ``status``): exactly the cells a table or figure spec reads,
as one ``--protocol/--method/--set`` selection per column and row setting, so a whole figure is one
command to compute and one to draw::

    bench run --report cpt_figure4            # CoOp, Global-ETF, CPT w/o RS and CPT on its column, 5 seeds
    bench plan --report lamp_figure3          # its 22 settings of LAMP: what is done, what is left
"""
from __future__ import annotations

import argparse
import json
from typing import Dict, List, Tuple

from bench.core.errors import BenchError
from bench.core.registry import METHODS

from .common import parse_sets


def spec_selections(args) -> Tuple[List[argparse.Namespace], List[str]]:
    """(one ``args`` per selection the spec needs, notes on rows that cannot run here).  A selection is a
    column's protocols with the column's overrides, and the methods of rows that share their settings;
    ``--set`` items add to every selection (a method's only where the spec runs it) under the spec's own."""
    from bench.plugins import load_all
    from bench.reporting.figurespec import expanded
    from bench.reporting.reportspec import load_spec

    spec = load_spec(args.report)
    load_all()  # the rows' methods, built in or plugged in
    if args.rows == "all" and spec.extra_rows:
        spec.rows = [*spec.rows, *spec.extra_rows]
    spec = expanded(spec)[0]
    if spec.rows == "all":
        raise BenchError(f"report '{args.report}' takes every method with results ('rows: all'); run it with "
                         "--protocol and --method instead")
    protocol_sets, method_sets = parse_sets(args.set)
    rows = [r for r in spec.rows if runnable(r.method)]
    notes = [f"row '{r.name}': {r.method} is reported only (the paper's numbers; nothing to run)"
             for r in spec.rows if r not in rows]
    unused = sorted(set(method_sets) - {r.method for r in rows})
    if unused:
        raise BenchError(f"--set names method '{unused[0]}', which report '{args.report}' does not run")
    wanted: Dict[Tuple[str, str], List[Tuple[str, dict]]] = {}  # (column, its overrides) -> (method, options)
    for column in spec.columns:
        entries = wanted.setdefault((column.pattern, json.dumps({**protocol_sets, **column.set}, sort_keys=True)), [])
        for row in rows:
            entry = (row.method, merged(method_sets.get(row.method, {}), row.set))
            if entry not in entries:
                entries.append(entry)
    return [selection(args, pattern, json.loads(sets), chosen, spec.seeds)
            for (pattern, sets), entries in wanted.items() for chosen in packed(entries)], notes


def runnable(method: str) -> bool:
    """Whether the suite runs ``method`` (a reported-only card's is not; an unknown name is an error)."""
    if method in METHODS.reported and method not in METHODS:
        return False
    METHODS.get(method)
    return True


def merged(base: dict, row_set: dict) -> dict:
    """A row's ``set`` (``{lambda_rs: 0, train.epochs: 15}``) over the command line's options of its method."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for path, value in row_set.items():
        head, _, field = path.partition(".")
        if field:
            out.setdefault(head, {})[field] = value
        else:
            out[path] = value
    return out


def packed(entries: List[Tuple[str, dict]]) -> List[Dict[str, dict]]:
    """(method, options) pairs in as few selections as they go, each method once in a selection (a
    selection sets a method's options once)."""
    selections: List[Dict[str, dict]] = []
    for method, options in entries:
        free = next((chosen for chosen in selections if method not in chosen), None)
        if free is None:
            selections.append({method: options})
        else:
            free[method] = options
    return selections


def selection(args, pattern: str, protocol_sets: dict, chosen: Dict[str, dict], seeds) -> argparse.Namespace:
    """``args`` as ``bench run --protocol PATTERN --method ... --set ...`` of one selection."""
    items = [f"protocol.{path}={json.dumps(value)}" for path, value in protocol_sets.items()]
    for method, options in chosen.items():
        for field, value in options.items():
            if isinstance(value, dict):  # train: {epochs: 15}
                items += [f"{method}.{field}.{k}={json.dumps(v)}" for k, v in value.items()]
            else:
                items.append(f"{method}.{field}={json.dumps(value)}")
    return argparse.Namespace(**{**vars(args), "protocol": pattern, "method": list(chosen), "set": items,
                                 "seeds": args.seeds or seeds, "report": None})
