"""`bench plan`: the grid of cells a `bench run` selection makes, their state, counts per protocol and
method, and the GPU hours still to go (from the timings of finished cells of the same family and method).

    bench plan --protocol 'b2n_lamp/*/imb10' --method all --device cuda
"""
from __future__ import annotations

from pathlib import Path

from .run import add_selection, selections


def cmd_plan(args) -> int:
    from bench.launch.cells import counts_table, estimate, finished_timings, selection_states, unique

    states = unique([state for _, runners, methods, seeds in selections(args)
                     for state in selection_states(runners, methods, seeds)])
    print(counts_table(states))
    print(estimate(states, finished_timings(Path(args.results_dir))))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="the cells a run selection makes: states, counts, GPU hours to go")
    add_selection(p, method_required=False)
    p.set_defaults(func=cmd_plan)
