"""The cells of a selection and the state of each, read from the results folder (for `bench plan`
and `bench status`): done, running (a fresh lease: its holder and age), stale (a lease gone silent),
failed (its one-line error) or to do::

    states = cell_states(runner, ["coop", "maple"], seeds=None)    # one CellState per cell
    print(counts_table(states))                                     # per protocol and method
    print(estimate(states, finished_timings(Path("results"))))      # GPU hours still to go
"""
from __future__ import annotations

import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

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


def selection_states(runners: list, methods: List[str], seeds: Optional[List[int]]) -> List[CellState]:
    """:func:`cell_states` of every protocol of a selection (one runner each)."""
    return [state for runner in runners for state in cell_states(runner, methods, seeds)]


def unique(states: List[CellState]) -> List[CellState]:
    """Each cell once: a figure's sweep names its default setting in every panel."""
    return list({(s.protocol, s.method, s.key, s.seed): s for s in states}.values())


def cell_states(runner, methods: List[str], seeds: Optional[List[int]]) -> List[CellState]:
    """What each cell of ``runner``'s protocol is now (its keys as ``bench run`` would make them)."""
    store, name = runner.store, runner.protocol.name
    out = []
    for cell in runner.plan(methods, seeds):
        where = (name, cell.method, cell.key, cell.seed)
        state, detail = state_of(store, where, runner.options.lease_timeout)
        out.append(CellState(name, cell.method, cell.seed, runner.protocol.family, state, detail, cell.key))
    return out


def state_of(store, where: tuple, stale_after: float) -> Tuple[str, str]:
    if read_record(store.result_path(*where))[0] is not None:
        return "done", ""
    lease = store.lease_path(*where)
    if lease.exists():
        holder, seconds = read_lease(lease), age(lease) or 0.0
        state = "stale" if is_stale(lease, holder, stale_after) else "running"
        return state, f"{holder_label(holder)}, {seconds:.0f} s since heard"
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
    """(family, method) -> (seconds, on a GPU) of every finished result under ``root``."""
    found: Dict[Tuple[str, str], List[Tuple[float, bool]]] = defaultdict(list)
    for folder, _, files in os.walk(root):
        for name in files:
            if name.startswith("seed-") and name.endswith(".json"):
                record, _ = read_record(os.path.join(folder, name))
                if record is not None and isinstance(record.get("seconds"), (int, float)):
                    family = record["config"].get("protocol", {}).get("family", "")
                    gpu = str(record.get("env", {}).get("device", "")).startswith("cuda")
                    found[(family, record["method"])].append((float(record["seconds"]), gpu))
    return found


def estimate(states: List[CellState], timings: Dict[Tuple[str, str], List[Tuple[float, bool]]]) -> str:
    """Hours still to go: each cell not done at the median time of finished cells of its protocol
    family and method (GPU timings where there are any); says which have no timing yet."""
    hours, unknown, cpu_only = 0.0, Counter(), set()
    for s in states:
        if s.state == "done":
            continue
        known = timings.get((s.family, s.method), [])
        gpu = [t for t, on_gpu in known if on_gpu]
        if not known:
            unknown[f"{s.family}/{s.method}"] += 1
            continue
        if not gpu:
            cpu_only.add(f"{s.family}/{s.method}")
        hours += statistics.median(gpu or [t for t, _ in known]) / 3600
    left = sum(s.state != "done" for s in states)
    text = f"estimate: {hours:.2f} hours for {left - sum(unknown.values())} of {left} cells not done"
    text += f" (CPU timings only for {', '.join(sorted(cpu_only))})" if cpu_only else " (GPU timings)" * bool(hours)
    if unknown:
        text += (f"; no finished cell of the same family and method to time "
                 f"{', '.join(f'{k} ({n})' for k, n in sorted(unknown.items()))}")
    return text
