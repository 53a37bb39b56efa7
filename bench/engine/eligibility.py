"""Which methods a selection runs on a protocol: one rule for `bench run`, `bench plan` and `bench status`.

A method whose card has no recipe for the protocol's family (nor for the family it falls back to,
``bench.config.recipes.FALLBACK``) would train on the engine defaults: named alone it runs, with a
note; ``--method all`` (``skip_unfit``) leaves it out with a note.  A method that needs an input only
the user has (a knowledge base) or cannot run the protocol is found by building it (``Runner.preflight``)::

    methods = with_recipes(runner, ["coop", "my_plugin"], skip_unfit=True)   # notes, then the kept ones
    cells = planned_cells(runner, methods, seeds=None, skip_unfit=True)      # what `bench plan` counts
"""
from __future__ import annotations

from typing import List, Optional

from bench.config.recipes import card_recipe
from bench.core.errors import BenchError
from bench.core.registry import METHODS


def missing_recipe(name: str, family: str) -> Optional[str]:
    """Why ``name`` would train on engine defaults in ``family``, or None (it has a recipe, or is not trained)."""
    cls = METHODS.get(name)
    if not getattr(cls, "trains", True) or card_recipe(cls, family) is not None:
        return None
    card = getattr(cls, "card", None)
    has = ", ".join(card.recipes) if card is not None and card.recipes else "none"
    return f"its card has no recipe for family '{family}' (its recipes: {has}), so engine defaults apply"


def with_recipes(runner, methods: List[str], skip_unfit: bool) -> List[str]:
    """``methods`` less, with ``skip_unfit``, those with no recipe for the runner's family; each such
    method gets a note either way."""
    kept = []
    for name in methods:
        why = missing_recipe(name, runner.protocol.family)
        if why is None:
            kept.append(name)
        elif skip_unfit:
            runner.log(f"bench: note: {name} is left out of {runner.shown_name}: {why}; "
                       f"name it with --method to run it anyway")
        else:
            kept.append(name)
            runner.log(f"bench: note: {name} on {runner.shown_name}: {why} "
                       f"(bench show {runner.protocol.name} --method {name} lists them)")
    return kept


def planned_cells(runner, methods: List[str], seeds: Optional[List[int]], skip_unfit: bool) -> list:
    """The cells `bench run` would run with these arguments, for `bench plan` and `bench status`: with
    ``skip_unfit`` each method is built once, as the run's preflight does, and those that need a
    knowledge base or cannot run the protocol are left out with the run's notes.  Without the data or
    the backbone here, every method is listed, with a note saying so."""
    cells = runner.plan(with_recipes(runner, methods, skip_unfit), seeds)
    if not skip_unfit or not cells:
        return cells
    try:
        return runner.preflight(cells, skip_unfit=True)
    except BenchError as err:
        runner.log(f"bench: note: cannot check which methods run on {runner.shown_name} here ({err}); "
                   "every method is listed, as if each could")
        return cells
