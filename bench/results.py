"""Results as one tidy pandas table, merged from one or several results folders (several machines).

Every ``seed-*.json`` under each folder is read and checked against the record schema
(:func:`bench.store.read_record`); unreadable files are reported and skipped, never touched.
The same cell (protocol, method, key, seed) found more than once is kept once when its metrics
agree, and reported as a conflict, and left out, when they do not::

    results = load_results(["results", "/mnt/cluster/results"])
    results.table          # a row per result: protocol, method, key, seed, code_version, config, <metrics>
    results.conflicts      # [Conflict(protocol, method, key, seed, paths)]
    results.problems       # ["skipped 'x/seed-1.json': it is not valid JSON (...)", ...]
    missing_cells(results.table, protocols, methods, seeds)   # what an incomplete block lacks
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from .errors import BenchError

CELL = ["protocol", "method", "key", "seed"]
INFO = ["code_version", "path", "column_order", "config"]  # the other non-metric columns


@dataclass(frozen=True)
class Conflict:
    protocol: str
    method: str
    key: str
    seed: int
    paths: Tuple[str, ...]

    def __str__(self) -> str:
        return (f"{self.protocol} / {self.method} [{self.key[:12]}] / seed {self.seed}: different metrics in "
                + ", ".join(f"'{p}'" for p in self.paths))


@dataclass
class Results:
    table: object  # a pandas DataFrame (pandas is imported lazily: an optional dependency)
    conflicts: List[Conflict] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)  # unreadable files, one line each
    duplicates: int = 0  # copies of a cell with the same metrics, dropped

    @property
    def metrics(self) -> List[str]:
        return [c for c in self.table.columns if c not in (*CELL, *INFO)]


def require_pandas():
    try:
        import pandas
    except ImportError:
        raise BenchError("reports need pandas, scipy, jinja2, tabulate and matplotlib: "
                         "pip install -e '.[report]'") from None
    return pandas


def result_files(folder: Path) -> List[Path]:
    """Every ``seed-*.json`` below ``folder`` (protocol names may hold '/', so at any depth)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [Path(root) / f for f in sorted(files) if f.startswith("seed-") and f.endswith(".json")]
    return found


def read_folders(folders: Sequence) -> Tuple[List[Tuple[Path, dict]], List[str]]:
    """``[(path, record)]`` of every valid record, and a line for each file that is not one."""
    from .store import ResultStore, read_record

    good, problems = [], []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise BenchError(f"results folder '{folder}' does not exist; give the --results-dir of a bench run")
        store = ResultStore(folder)
        for path in result_files(folder):
            record, problem = read_record(path)
            if problem is None and path != store.result_path(record["protocol"], record["method"], record["key"],
                                                             record["seed"]):
                problem = "is not where its own protocol, method, key and seed put it (a copy?)"
            if problem is None:
                good.append((path, record))
            else:
                problems.append(f"skipped '{path}': it {problem}")
    return good, problems


def merge(found: Iterable[Tuple[Path, dict]]) -> Tuple[List[Tuple[Path, dict]], List[Conflict], int]:
    """One record per cell: copies with equal metrics are dropped, cells whose copies disagree are
    conflicts and kept out."""
    cells: Dict[tuple, List[Tuple[Path, dict]]] = defaultdict(list)
    for path, record in found:
        cells[tuple(record[c] for c in CELL)].append((path, record))
    kept, conflicts, duplicates = [], [], 0
    for cell, copies in cells.items():
        if any(r["metrics"] != copies[0][1]["metrics"] for _, r in copies[1:]):
            conflicts.append(Conflict(*cell, tuple(str(p) for p, _ in copies)))
            continue
        kept.append(copies[0])
        duplicates += len(copies) - 1
    return kept, conflicts, duplicates


def load_results(folders: Sequence) -> Results:
    """The tidy table of every valid, unconflicted result under ``folders``."""
    pandas = require_pandas()
    if not folders:
        raise BenchError("no results folder given")
    found, problems = read_folders(folders)
    kept, conflicts, duplicates = merge(found)
    rows = [{**{c: r[c] for c in CELL}, "code_version": r["code_version"], "path": str(p),
             "column_order": tuple(r.get("column_order") or ()), "config": r["config"],
             **{m: None if v is None else float(v) for m, v in r["metrics"].items()}} for p, r in kept]
    table = pandas.DataFrame(rows, columns=[*CELL, *INFO] if not rows else None)
    if rows:
        table = table.sort_values(CELL, kind="stable").reset_index(drop=True)
    return Results(table, sorted(conflicts, key=lambda c: (c.protocol, c.method, c.seed)), problems, duplicates)


def missing_cells(table, protocols: Sequence[str], methods: Sequence[str],
                  seeds: Sequence[int]) -> Dict[Tuple[str, str], List[int]]:
    """(protocol, method) -> the seeds it lacks, for each block that is not complete."""
    have = set(zip(table["protocol"], table["method"], table["seed"])) if len(table) else set()
    gaps = {}
    for protocol in protocols:
        for method in methods:
            lacking = [s for s in seeds if (protocol, method, s) not in have]
            if lacking:
                gaps[(protocol, method)] = lacking
    return gaps
