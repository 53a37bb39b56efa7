"""``bench run --report SPEC`` (and ``plan``, ``status``): exactly the cells a table or figure spec reads,
as one ``--protocol/--method/--set`` selection per column and row setting, so a whole figure is one
command to compute and one to draw::

    bench run --report cpt_figure4            # CoOp, Global-ETF, CPT w/o RS and CPT on its column, 5 seeds
    bench plan --report lamp_figure3          # its 22 settings of LAMP: what is done, what is left
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from typing import Dict, Iterable, List, Optional, Tuple

from bench.core.errors import BenchError
from bench.core.registry import METHODS

from .common import parse_overrides, parse_sets


def spec_selections(args) -> Tuple[List[argparse.Namespace], List[str]]:
    """(one ``args`` per selection the spec needs, notes on rows that cannot run here).  A selection is a
    column's protocols with the column's overrides, and the methods of rows that share their settings;
    ``--set protocol.PATH=VALUE`` adds to every column under the column's own, ``--set METHOD.FIELD=VALUE``
    only fields outside the cell key (:func:`check_method_sets`)."""
    from bench.plugins import load_all
    from bench.reporting.figurespec import expanded
    from bench.reporting.reportspec import load_spec

    spec = with_extra_rows(load_spec(args.report), args.rows)
    load_all()  # the rows' methods, built in or plugged in
    spec = expanded(spec)[0]
    if spec.rows == "all":
        raise BenchError(f"report '{args.report}' takes every method with results ('rows: all'); run it with "
                         "--protocol and --method instead")
    protocol_sets, method_sets = parse_sets(args.set)
    rows = [r for r in spec.rows if runnable(r.method)]
    if not rows:
        raise BenchError(f"report '{args.report}': every row is reported only (the paper's numbers); "
                         "there is nothing to run")
    notes = [f"row '{r.name}': {r.method} is reported only (the paper's numbers; nothing to run)"
             for r in spec.rows if r not in rows]
    unused = sorted(set(method_sets) - {r.method for r in rows})
    if unused:
        raise BenchError(f"--set names method '{unused[0]}', which report '{args.report}' does not run")
    check_method_sets(method_sets)
    wanted: Dict[Tuple[str, str], List[Tuple[str, dict]]] = {}  # (column, its overrides) -> (method, options)
    named: Dict[str, List[str]] = {}  # a (method, options) entry -> the rows that ask for it
    for column in spec.columns:
        entries = wanted.setdefault((column.pattern, json.dumps({**protocol_sets, **column.set}, sort_keys=True)), [])
        for row in rows:
            entry = (row.method, merged(method_sets.get(row.method, {}), row.set))
            named.setdefault(entry_id(*entry), []).append(row.name)
            if entry not in entries:
                entries.append(entry)
    return [selection(args, pattern, json.loads(sets), chosen, spec.seeds, named)
            for (pattern, sets), entries in wanted.items() for chosen in packed(entries)], notes


def with_extra_rows(spec, rows: Optional[str]):
    """``spec`` with its extra rows after the paper's under ``--rows all`` (``bench report``, ``bench run``)."""
    if rows == "all" and spec.extra_rows:
        return dataclasses.replace(spec, rows=[*spec.rows, *spec.extra_rows], extra_rows=[])
    return spec


def check_method_sets(method_sets: Dict[str, dict]) -> None:
    """With ``--report``, ``--set METHOD.FIELD`` may give only fields outside the cell key (a file's place,
    data-loading processes): a field of the key would make cells that the spec never reads."""
    from bench.config.recipes import MACHINE_FIELDS

    for method, options in method_sets.items():
        cfg = METHODS.get(method).Config
        allowed = [f.name for f in dataclasses.fields(cfg) if not f.metadata.get("identity", True)]
        allowed += sorted(MACHINE_FIELDS)
        given = [f"train.{k}" for k in options.get("train", {})] + [k for k in options if k != "train"]
        refused = [path for path in given if path not in allowed]
        if refused:
            raise BenchError(f"--set {method}.{refused[0]}: with --report the spec's rows set the method's settings; "
                             "a field of the cell key would make cells the spec never reads, so give it in a row's "
                             "`set` (fields outside the key, such as "
                             f"{', '.join(f'{method}.{path}' for path in allowed)}, are allowed)")


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


def entry_id(method: str, options: dict) -> str:
    """A (method, options) entry as a dictionary key."""
    return json.dumps([method, options], sort_keys=True)


def selection(args, pattern: str, protocol_sets: dict, chosen: Dict[str, dict], seeds,
              named: Dict[str, List[str]]) -> argparse.Namespace:
    """``args`` as ``bench run --protocol PATTERN --method ... --set ...`` of one selection, and under
    ``spec_rows`` the rows each of its methods stands for (errors name them: :func:`rows_named`)."""
    items = [f"protocol.{path}={json.dumps(value)}" for path, value in protocol_sets.items()]
    rows = {method: named[entry_id(method, options)] for method, options in chosen.items()}
    for method, options in chosen.items():
        own = []
        for field, value in options.items():
            if isinstance(value, dict):  # train: {epochs: 15}
                own += [f"{method}.{field}.{k}={json.dumps(v)}" for k, v in value.items()]
            else:
                own.append(f"{method}.{field}={json.dumps(value)}")
        with rows_named(args.report, rows[method]):
            parse_overrides(own)  # a row's `set` that is no METHOD.FIELD: the row is named
        items += own
    return argparse.Namespace(**{**vars(args), "protocol": pattern, "method": list(chosen), "set": items,
                                 "seeds": args.seeds or seeds, "report": None, "spec_name": args.report,
                                 "spec_rows": rows})


@contextlib.contextmanager
def rows_named(report: Optional[str], rows: Iterable[str]):
    """A BenchError raised inside names the spec and its rows: ``report 'X', row 'Y': ...``."""
    rows = list(dict.fromkeys(rows))
    if report is None or not rows:
        yield
        return
    try:
        yield
    except BenchError as err:
        shown = ", ".join(f"'{row}'" for row in rows)
        raise BenchError(f"report '{report}', row{'s' if len(rows) > 1 else ''} {shown}: {err}") from None
