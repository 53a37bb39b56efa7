"""Results as one tidy pandas table, merged from one or several results folders (several machines).

Every ``seed-*.json`` under each folder is read and checked against the record schema
(:func:`bench.records.schema.read_record`); unreadable files are reported and skipped, never touched.
The same cell (protocol, method, key, seed) found more than once is kept once when its metrics
agree, and reported as a conflict, and left out, when they do not::

    results = load_results(["results", "/mnt/cluster/results"])
    results.table          # a row per result: protocol, method, key, seed, code_version, config, <metrics>
    results.conflicts      # [Conflict(protocol, method, key, seed, paths)]
    results.problems       # ["skipped 'x/seed-1.json': it is not valid JSON (...)", ...]
    missing_cells(results.table, protocols, methods, seeds)   # what an incomplete block lacks
"""
from __future__ import annotations

import gc
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from bench.core.safeyaml import load_json
from bench.core.errors import BenchError, reason
from bench.records.headline import cost_metrics

CELL = ["protocol", "method", "key", "seed"]
INFO = ["code_version", "path", "column_order", "config"]  # the other non-metric columns
INDEX_VERSION = 3  # bump when slim() keeps other fields, or reading refuses more (3: per-class lengths)


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


def result_files(folder: str) -> List[Tuple[str, int, int]]:
    """``(path below folder, mtime_ns, size)`` of every ``seed-*.json`` (protocol names may hold
    '/', so at any depth), in sorted order."""
    found: List[Tuple[str, int, int]] = []

    def walk(rel: str) -> None:
        with os.scandir(os.path.join(folder, rel)) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = os.path.join(rel, entry.name) if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    walk(path)
                elif entry.name.startswith("seed-") and entry.name.endswith(".json"):
                    stat = entry.stat()
                    found.append((path, stat.st_mtime_ns, stat.st_size))

    walk("")
    return found


def slim(record: dict) -> dict:
    """What the table keeps of a record (per-class accuracies and the rest stay in the file); its costs
    and the method's own numbers (``method_metrics``, MDPR's KB prior statistics) join its metrics."""
    from bench.records.schema import is_metric

    own = record.get("method_metrics")
    own = {k: v for k, v in own.items() if is_metric(k, v)} if isinstance(own, dict) else {}  # unchecked on reading
    return {**{c: record[c] for c in CELL}, "code_version": record["code_version"],
            "metrics": {**cost_metrics(record), **own, **record["metrics"]},
            "column_order": list(record.get("column_order") or [])}


def read_file(folder: str, rel: str) -> Tuple[Optional[dict], Optional[dict], Optional[str]]:
    """``(slim record, config, None)`` of one result file, or ``(None, None, what is wrong)``."""
    from bench.records.schema import read_placed

    record, problem = read_placed(folder, rel)
    return (None, None, problem) if problem is not None else (slim(record), record["config"], None)


def read_folder(folder: str, index: dict) -> Tuple[List[Tuple[str, dict]], List[str], bool]:
    """Records of one folder, from ``index`` where a file's size and mtime are unchanged; returns
    ``[(path, slim record)]``, problems, and whether the index changed."""
    files, configs = index.setdefault("files", {}), index.setdefault("configs", {})
    listed = result_files(folder)
    stale = [(rel, mtime, size) for rel, mtime, size in listed if (files.get(rel) or [None, None])[:2] != [mtime, size]]
    problems = []
    for rel, mtime, size in stale:
        record, config, problem = read_file(folder, rel)
        files.pop(rel, None)
        if problem is not None:
            problems.append(f"skipped '{os.path.join(folder, rel)}': it {problem}")
            continue
        files[rel] = [mtime, size, record]
        configs.setdefault(record["key"], config)
    seen = {rel for rel, _, _ in listed}
    gone = [rel for rel in files if rel not in seen]
    for rel in gone:
        del files[rel]
    good = [(os.path.join(folder, rel), files[rel][2]) for rel, _, _ in listed if rel in files]
    return good, problems, bool(stale or gone)


def read_folders(folders: Sequence) -> Tuple[List[Tuple[str, dict]], Dict[str, dict], List[str]]:
    """``[(path, slim record)]`` of every valid record, the config of each key, and a line for
    each file that is not a valid record.  Each folder's index (in the bench cache) lets a re-load
    read only new and changed files."""
    good, configs, problems = [], {}, []
    collecting = gc.isenabled()
    gc.disable()  # hundreds of thousands of small dicts: the collector would rescan them all, often
    try:
        for folder in map(str, folders):
            if not os.path.isdir(folder):
                raise BenchError(f"results folder '{folder}' does not exist; give the --results-dir of a bench run")
            index = read_index(folder)
            found, bad, changed = read_folder(folder, index)
            good += found
            problems += bad
            configs.update(index["configs"])
            if changed:
                write_index(folder, index)
    finally:
        if collecting:
            gc.enable()
    return good, configs, problems


def index_path(folder: str) -> Path:
    from bench.config.catalog import cache_root

    name = hashlib.sha256(os.path.abspath(folder).encode()).hexdigest()[:24]
    return cache_root() / "results-index" / f"{name}.json"


def read_index(folder: str) -> dict:
    """The folder's index, or an empty one (missing, damaged, or of other code: read everything)."""
    from bench import __version__
    from bench.records.schema import SCHEMA

    path = index_path(folder)
    try:
        index = load_json(path.read_text())
    except OSError:
        return {}
    except ValueError as err:
        from bench.core.atomic import set_aside_note
        from bench.core.errors import warn

        warn(f"results index '{path}' is damaged ({reason(err)}); {set_aside_note(path)}, reading every result again")
        return {}
    ok = isinstance(index, dict) and index.get("version") == [__version__, SCHEMA, INDEX_VERSION]
    return index if ok and isinstance(index.get("files"), dict) and isinstance(index.get("configs"), dict) else {}


def write_index(folder: str, index: dict) -> None:
    from bench import __version__
    from bench.core.atomic import write_json
    from bench.records.schema import SCHEMA

    try:
        write_json(index_path(folder), {**index, "version": [__version__, SCHEMA, INDEX_VERSION]}, compact=True)
    except OSError:  # a read-only cache only costs speed
        pass


def merge(found: Iterable[Tuple[str, dict]]) -> Tuple[List[Tuple[str, dict]], List[Conflict], int]:
    """One record per cell: copies with equal metrics are dropped, cells whose copies disagree are
    conflicts and kept out."""
    first: Dict[tuple, Tuple[str, dict]] = {}
    copies: Dict[tuple, List[Tuple[str, dict]]] = defaultdict(list)  # cells found more than once
    for path, record in found:
        cell = (record["protocol"], record["method"], record["key"], record["seed"])
        if cell in first:
            copies[cell].append((path, record))
        else:
            first[cell] = (path, record)
    conflicts, duplicates = [], 0
    for cell, more in copies.items():
        if any(r["metrics"] != first[cell][1]["metrics"] for _, r in more):
            conflicts.append(Conflict(*cell, tuple(str(p) for p, _ in [first.pop(cell), *more])))
        else:
            duplicates += len(more)
    return list(first.values()), conflicts, duplicates


def load_results(folders: Sequence) -> Results:
    """The tidy table of every valid, unconflicted result under ``folders``."""
    pandas = require_pandas()
    if not folders:
        raise BenchError("no results folder given")
    found, configs, problems = read_folders(folders)
    kept, conflicts, duplicates = merge(found)
    rows = [{**{c: r[c] for c in CELL}, "code_version": r["code_version"], "path": p,
             "column_order": tuple(r["column_order"]), "config": configs[r["key"]],
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
