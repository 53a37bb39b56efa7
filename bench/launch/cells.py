"""The cells of a selection and the state of each, read from the results folder (for `bench plan`
and `bench status`): done, running (a fresh lease: its holder and age), stale (a lease gone silent),
failed (its one-line error) or to do::

    states = cell_states(runner, ["coop", "maple"], seeds=None)    # one CellState per cell
    print(counts_table(states))                                     # per protocol and method
    print(estimate(states, finished_timings(Path("results"))))      # GPU hours still to go

An estimate uses only comparable timings: finished cells of the same method, protocol family,
dataset and backbone (a smoke cell says nothing about a CIFAR one); other cells say so.
"""
from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.engine.eligibility import planned_cells
from bench.core.namedfiles import file_kind
from bench.engine.lease import age, holder_label, is_stale, read_lease
from bench.records.schema import read_record

STATES = ("done", "running", "stale", "failed", "to do")


@dataclass
class CellState:
    protocol: str
    method: str
    seed: int
    family: str
    state: str
    detail: str = ""  # running/stale: the holder and the lease's age; failed: the error
    key: str = ""  # the cell's key: two selections (a figure's settings) may name one cell
    timing: str = ""  # what its time depends on: family, dataset and backbone (:func:`comparable`)


def selection_states(runners: list, methods: List[str], seeds: Optional[List[int]],
                     skip_unfit: bool = False) -> List[CellState]:
    """:func:`cell_states` of every protocol of a selection (one runner each)."""
    return [state for runner in runners for state in cell_states(runner, methods, seeds, skip_unfit)]


def unique(states: List[CellState]) -> List[CellState]:
    """Each cell once: a figure's sweep names its default setting in every panel."""
    return list({(s.protocol, s.method, s.key, s.seed): s for s in states}.values())


def cell_states(runner, methods: List[str], seeds: Optional[List[int]], skip_unfit: bool = False) -> List[CellState]:
    """What each cell of ``runner``'s protocol is now (its keys as ``bench run`` would make them, the
    methods chosen as it would: ``skip_unfit`` leaves out those ``--method all`` leaves out)."""
    store, name = runner.store, runner.protocol.name
    timing = comparable(runner.protocol.identity())
    out = []
    for cell in planned_cells(runner, methods, seeds, skip_unfit):
        where = (name, cell.method, cell.key, cell.seed)
        state, detail = state_of(store, where, runner.options.lease_timeout)
        out.append(CellState(name, cell.method, cell.seed, runner.protocol.family, state, detail, cell.key, timing))
    return out


def comparable(protocol: dict) -> str:
    """What a cell's time depends on besides its method: the family, dataset and backbone of a
    protocol's identity (as a result's ``config.protocol`` records it)."""
    return json.dumps([protocol.get(k) for k in ("family", "dataset", "backbone")], sort_keys=True)


def state_of(store, where: tuple, stale_after: float) -> Tuple[str, str]:
    if read_record(store.result_path(*where))[0] is not None:
        return "done", ""
    lease = store.lease_path(*where)
    if os.path.lexists(lease):  # a dangling link there too: `bench run` sets it aside
        holder, seconds, odd = read_lease(lease), age(lease) or 0.0, file_kind(lease)
        state = "stale" if is_stale(lease, holder, stale_after) else "running"
        who = f"{odd} where its lease should be" if odd else holder_label(holder)
        return state, f"{who}, {seconds:.0f} s since heard"
    failed = store.failure(*where)
    if failed is not None:
        return "failed", str(failed.get("error"))
    return "to do", ""


def counts_table(states: List[CellState]) -> str:
    """A markdown table: one row per (protocol, method), a column per state, and the total."""
    counts: Dict[Tuple[str, str], Counter] = defaultdict(Counter)
    for s in states:
        counts[(s.protocol, s.method)][s.state] += 1
    total = Counter(s.state for s in states)
    lines = ["| Protocol | Method | " + " | ".join(STATES) + " |", "|---|---|" + "---:|" * len(STATES)]
    for (protocol, method), c in counts.items():
        lines.append(f"| {protocol} | {method} | " + " | ".join(str(c[k]) for k in STATES) + " |")
    lines.append(f"| all | {len(counts)} rows | " + " | ".join(str(total[k]) for k in STATES) + " |")
    return "\n".join(lines)


def details(states: List[CellState]) -> List[str]:
    """One line per cell that is running, stale or failed, with its holder or error."""
    return [f"{s.state:<8} {s.protocol} / {s.method} / seed {s.seed}: {s.detail}"
            for s in states if s.state in ("running", "stale", "failed")]


def finished_timings(root: Path) -> Dict[Tuple[str, str], List[Tuple[float, bool]]]:
    """(:func:`comparable`, method) -> (seconds, on a GPU) of every finished result under ``root``."""
    found: Dict[Tuple[str, str], List[Tuple[float, bool]]] = defaultdict(list)
    for folder, _, files in os.walk(root):
        for name in files:
            if name.startswith("seed-") and name.endswith(".json"):
                record, _ = read_record(os.path.join(folder, name))
                if record is not None and isinstance(record.get("seconds"), (int, float)):
                    timing = comparable(record["config"].get("protocol", {}))
                    gpu = str(record.get("env", {}).get("device", "")).startswith("cuda")
                    found[(timing, record["method"])].append((float(record["seconds"]), gpu))
    return found


def estimate(states: List[CellState], timings: Dict[Tuple[str, str], List[Tuple[float, bool]]]) -> str:
    """Hours still to go: each cell not done at the median time of comparable finished cells (same
    method, family, dataset and backbone; GPU timings where there are any); says which have none."""
    hours, unknown, cpu_only, timed = 0.0, Counter(), set(), 0
    for s in states:
        if s.state == "done":
            continue
        known = timings.get((s.timing, s.method), [])
        gpu = [t for t, on_gpu in known if on_gpu]
        if not known:
            unknown[f"{s.protocol}/{s.method}"] += 1
            continue
        if not gpu:
            cpu_only.add(f"{s.protocol}/{s.method}")
        hours, timed = hours + statistics.median(gpu or [t for t, _ in known]) / 3600, timed + 1
    left = sum(s.state != "done" for s in states)
    if not left:
        return "estimate: every cell is done"
    named = [f"{k} ({n})" for k, n in sorted(unknown.items())]
    named = named[:4] + [f"{len(named) - 4} more protocol/method pairs"] * (len(named) > 4)  # a table has hundreds
    missing = (f"no comparable timing (no finished cell of the same method, family, dataset and backbone) for "
               f"{sum(unknown.values())} cells: {', '.join(named)}")
    if not timed:
        return f"estimate: {missing}"
    text = f"estimate: {hours:.2f} hours for {timed} of {left} cells not done"
    text += f" (CPU timings only for {', '.join(sorted(cpu_only))})" if cpu_only else " (GPU timings)"
    return text + (f"; {missing}" if unknown else "")
