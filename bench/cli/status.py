"""`bench status`: where a selection stands: done / running (holder, age) / stale / failed (its error)
/ to do, per protocol and method, then one line per running, stale or failed cell.

    bench status --protocol 'cifar100_lt_ir*' --method coop maple
"""
from __future__ import annotations

from pathlib import Path

from .run import add_selection, selections


def cmd_status(args) -> int:
    from bench.launch.cells import counts_table, details, selection_states, unique

    states = unique([state for _, runners, methods, seeds in selections(args)
                     for state in selection_states(runners, methods, seeds)])
    print(counts_table(states))
    lines = details(states)
    if lines:
        print("\n" + "\n".join(lines))
    from bench.launch.slurm import launches

    launched = launches(Path(args.results_dir))
    if launched:
        print("\n" + "\n".join(launched))
    if any(s.state == "failed" for s in states):
        print("\nbench: each failed cell's traceback is beside its result (seed-<seed>.traceback.txt); "
              "bench run --retry-failed runs them again")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="done / running / stale / failed / to do, per protocol and method")
    add_selection(p, method_required=False)
    p.set_defaults(func=cmd_status)
