"""Multi-stage methods: a cell that starts from the trained state of another method's cell.

A method class names the methods whose trained state it starts from, in order::

    @METHODS.register("plotpp")
    class PLOTPP(Method):
        depends_on = ("plotpp@stage1",)        # stage 2 starts from stage 1

Each stage is a registered method with cells of its own in the results store: it is planned, leased,
resumed from its per-epoch checkpoint, skipped when done and reported like any other method.  For a
cell of ``plotpp`` (protocol P, seed s) the runner plans, before it, the cell of ``plotpp@stage1`` with
the same protocol and seed, whose options are its own (card, protocol, ``--set plotpp@stage1...``)
except that every option field both methods have takes the dependent's value (the shared settings:
PLOT++'s M, N, templates), and whose training recipe is its own.  The dependent's key includes the
stage's key (``config.method.after``), so a stage trained otherwise makes another dependent cell.

Running a dependent cell first makes sure its stages are done (run here under their own leases, or
"running elsewhere" while another worker holds one, so ``--wait`` tries again), then loads into the
freshly built method the final state of each stage, read from the stage's last checkpoint (its
trainable tensors and ``extra_state``): by name, or through the method's ``load_stage(name, tensors)``
when it defines one.  The dependent's own checkpoint then resumes it as usual.  In the runner::

    cells.extend(planned(runner, name, resolved, seeds))       # plan: stages first, keys chained
    waiting = run_stages_first(runner, cell, tag)               # run_leased: None when all are done
    start_from_stages(runner, cell, method)                     # run_cell: before training
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import torch

from bench.core.errors import BenchError, reason
from bench.core.registry import METHODS


def stages_of(name: str) -> Tuple[str, ...]:
    """The methods ``name``'s cells start from (its class's ``depends_on``)."""
    return tuple(getattr(METHODS.get(name), "depends_on", ()))


def with_stages(methods: List[str]) -> List[str]:
    """``methods`` and, before each, every stage it starts from (for ``--set`` checks)."""
    out: List[str] = []

    def add(name: str, chain: Tuple[str, ...]) -> None:
        if name in chain:
            raise BenchError(f"method '{name}' depends on itself through {' -> '.join(chain + (name,))}")
        for stage in stages_of(name):
            add(stage, chain + (name,))
        if name not in out:
            out.append(name)

    for name in methods:
        add(name, ())
    return out


def stage_resolved(runner, stage: str, resolved):
    """The options and recipe of ``stage`` as a stage of a cell with ``resolved``: its own, with every
    option field both Configs have set to the dependent's value."""
    own = runner.protocol.resolve(stage, runner.options.overrides.get(stage))
    names = {f.name for f in dataclasses.fields(own.options)}
    shared = {f.name: getattr(resolved.options, f.name) for f in dataclasses.fields(resolved.options)
              if f.name in names}
    sources = {**own.sources, **{name: "the stage's dependent" for name in shared}}
    return dataclasses.replace(own, options=dataclasses.replace(own.options, **shared), sources=sources)


def planned(runner, name: str, resolved, seeds: List[int], chain: Tuple[str, ...] = ()) -> list:
    """The cells of ``name`` with ``resolved`` (``runner.make_cells``), preceded by those of the stages they
    start from; each dependent's identity names its stages' keys (``after``)."""
    if name in chain:
        raise BenchError(f"method '{name}' depends on itself through {' -> '.join(chain + (name,))}")
    before, after = [], {}
    for stage in stages_of(name):
        cells = planned(runner, stage, stage_resolved(runner, stage, resolved), seeds, chain + (name,))
        before += cells
        after[stage] = cells[-1].key
    return before + runner.make_cells(name, resolved, seeds, after)


def stage_cells(runner, cell) -> list:
    """Every cell ``cell`` starts from (stages of stages first), for its seed."""
    return planned(runner, cell.method, cell.resolved, [cell.seed])[:-1]


def run_stages_first(runner, cell, tag: str) -> Optional[str]:
    """Each stage cell of ``cell`` finished, run here under its own lease if need be.  None when all are
    done; otherwise the outcome ``cell`` has now: "running elsewhere" while another worker holds a stage,
    or the failed stage's outcome."""
    for stage in stage_cells(runner, cell):
        where = (runner.protocol.name, stage.method, stage.key, stage.seed)
        if runner.store.load(*where) is not None:
            continue
        outcome, _ = runner.run_leased(stage, f"{tag} <- {stage.method}")
        runner.cell_outcomes.setdefault(where, outcome)
        if outcome not in ("ran", "done before"):
            runner.log(f"{tag}: waits for {stage.method} / seed {stage.seed} ({outcome})")
            return outcome
    return None


def final_state(runner, stage) -> Dict[str, torch.Tensor]:
    """The trained tensors of a finished stage cell: its last checkpoint's trainable and extra state."""
    path = runner.store.checkpoint_path(runner.protocol.name, stage.method, stage.key, stage.seed)
    try:
        state = torch.load(path, map_location=runner.device, weights_only=True)
    except Exception as err:  # missing, truncated or not a torch file
        raise BenchError(f"cannot read the final state of {stage.method} / seed {stage.seed} from '{path}' "
                         f"({reason(err)}); delete that stage's result to train it again") from None
    epochs = stage.resolved.train.epochs
    if not isinstance(state, dict) or state.get("key") != stage.key or state.get("epoch") != epochs:
        raise BenchError(f"checkpoint '{path}' is not the final state of {stage.method} / seed {stage.seed} "
                         f"(another key, or not {epochs} epochs); delete that stage's result to train it again")
    return {**state.get("trainable", {}), **state.get("extra", {})}


def load_by_name(method, stage: str, tensors: Dict[str, torch.Tensor]) -> None:
    """The default of ``load_stage``: each tensor into the method's state entry of the same name and shape."""
    own = method.state_dict()
    wrong = [name for name, t in tensors.items() if name not in own or tuple(own[name].shape) != tuple(t.shape)]
    if wrong:
        raise BenchError(f"method {method.registry_name} cannot start from {stage}: it has no tensor of "
                         f"that name and shape for {', '.join(sorted(wrong))}")
    method.load_state_dict(tensors, strict=False)


def start_from_stages(runner, cell, method) -> None:
    """Load into the freshly built ``method`` the final state of each stage its cell directly starts from."""
    for stage in stages_of(cell.method):
        stage_cell = planned(runner, stage, stage_resolved(runner, stage, cell.resolved), [cell.seed])[-1]
        tensors = final_state(runner, stage_cell)
        loader = getattr(method, "load_stage", None)
        if loader is not None:
            loader(stage, tensors)
        else:
            load_by_name(method, stage, tensors)
