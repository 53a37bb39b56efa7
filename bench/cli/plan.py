"""`bench plan`: the grid of cells a `bench run` selection makes, their state, counts per protocol and
method, and the GPU hours still to go (from the timings of finished cells of the same method, family,
dataset and backbone; "no comparable timing" for the others).  Keys only: ``--device cuda`` needs no GPU.

    bench plan --protocol 'b2n_lamp/*/imb10' --method all --device cuda
"""
from __future__ import annotations

from pathlib import Path

from .run import add_selection, noting_on_stderr, selections, unfit_skipped


def cmd_plan(args) -> int:
    from bench.launch.cells import counts_table, estimate, finished_timings, selection_states, unique

    states = unique([state for _, runners, methods, seeds in selections(args)
                     for state in selection_states(noting_on_stderr(runners), methods, seeds, unfit_skipped(args))])
    print(counts_table(states))
    print(estimate(states, finished_timings(Path(args.results_dir))))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="the cells a run selection makes: states, counts, GPU hours to go")
    add_selection(p, method_required=False)
    add_target(p)
    p.set_defaults(func=cmd_plan)


def add_target(p) -> None:
    """`plan` and `status` compute keys only: ``--device cuda`` needs no GPU here (a login node sees
    what a GPU job array writes), and the precision its "amp" recipes run at is part of the key."""
    p.add_argument("--amp-dtype", choices=["auto", "bf16", "fp16"], default="auto",
                   help="with --device cuda: the autocast dtype the run's GPUs use for amp recipes (part of the key; "
                        "default auto: this machine's GPU's, else bf16 as on A100/H100; fp16 for V100 and older)")
