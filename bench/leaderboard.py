"""Leaderboard tables: mean ± std across seeds, one row per method config."""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

# (record key, column title) in display order; a column shows if any row has it.
COLUMNS: List[Tuple[str, str]] = [
    ("all", "All"),
    ("many", "Many"),
    ("medium", "Medium"),
    ("few", "Few"),
    ("macro_f1", "Macro-F1"),
    ("base", "Base"),
    ("new", "New"),
    ("hm", "HM"),
]


@dataclass
class Row:
    method: str
    key: str
    seeds: List[int]
    values: Dict[str, List[float]]  # metric -> one value per seed (None dropped)

    def stat(self, metric: str) -> Optional[Tuple[float, float, int]]:
        vals = self.values.get(metric) or []
        if not vals:
            return None
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return statistics.fmean(vals), std, len(vals)


def aggregate(records: List[dict]) -> List[Row]:
    """Group records by (method, key); rows sorted by mean "all" accuracy, best first."""
    groups: Dict[Tuple[str, str], List[dict]] = defaultdict(list)
    for record in records:
        groups[(record["method"], record["key"])].append(record)
    rows = []
    for (method, key), recs in groups.items():
        recs.sort(key=lambda r: r["seed"])
        values: Dict[str, List[float]] = defaultdict(list)
        for rec in recs:
            for metric, value in rec["metrics"].items():
                if value is not None:
                    values[metric].append(float(value))
        rows.append(Row(method, key, [r["seed"] for r in recs], dict(values)))
    rows.sort(key=lambda r: (-(r.stat("all") or (0.0,))[0], r.method, r.key))
    return rows


def format_cell(stat: Optional[Tuple[float, float, int]], digits: int = 2) -> str:
    if stat is None:
        return "–"
    mean, std, n = stat
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def row_labels(rows: List[Row]) -> List[str]:
    """Method names, with a short key where one method has several configs."""
    per_method: Dict[str, int] = defaultdict(int)
    for row in rows:
        per_method[row.method] += 1
    return [f"{r.method} [{r.key[:8]}]" if per_method[r.method] > 1 else r.method for r in rows]


def markdown_table(rows: List[Row], digits: int = 2) -> str:
    columns = [(k, title) for k, title in COLUMNS if any(r.stat(k) for r in rows)]
    header = ["Method", "Seeds"] + [title for _, title in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(columns)) + "|"]
    for label, row in zip(row_labels(rows), rows):
        cells = [label, str(len(row.seeds))] + [format_cell(row.stat(k), digits) for k, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
