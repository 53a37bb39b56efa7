"""`bench status`: where a selection stands: done / running (holder, age) / stale / failed (its error)
/ to do, per protocol and method, then one line per running, stale or failed cell.

    bench status --protocol 'cifar100_lt_ir*' --method coop maple
"""
from __future__ import annotations

from pathlib import Path

from .plan import add_target
from .run import add_selection, noting_on_stderr, selections, unfit_skipped


def cmd_status(args) -> int:
    from bench.launch.cells import counts_table, details, selection_states, unique

    states = unique([state for _, runners, methods, seeds in selections(args)
                     for state in selection_states(noting_on_stderr(runners), methods, seeds, unfit_skipped(args))])
    from bench.launch.slurm import launches, mark_failed_launches

    launch_failed = mark_failed_launches(states, Path(args.results_dir))  # cells a failed SLURM task left undone
    print(counts_table(states))
    lines = details(states)
    if lines:
        print("\n" + "\n".join(lines))
    launched = launches(Path(args.results_dir))
    if launched:
        print("\n" + "\n".join(launched))
    if launch_failed:
        print("\nbench: cells of a failed SLURM launch: fix the error its task's .err log shows (a killed task: give "
              "it more memory or time), then launch again")
    if sum(s.state == "failed" for s in states) > launch_failed:
        print("\nbench: each failed cell's traceback is beside its result (seed-<seed>.traceback.txt); "
              "bench run --retry-failed runs them again")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="done / running / stale / failed / to do, per protocol and method")
    add_selection(p, method_required=False)
    add_target(p)
    p.set_defaults(func=cmd_status)
