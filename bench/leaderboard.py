"""Leaderboard tables: mean ± std across seeds, one row per method config.

Only results of the protocol's current configuration and code version are
compared by default; a method run with other settings gets a row labelled by
what differs from its current recipe::

    current, other = split_by_config(records, protocol.identity(), __version__)
    labels = {r["key"]: config_label(r, current_identity, __version__, references) for r in current}
    print(markdown_table(aggregate(current, labels)))   # | coop (train.lr=0.01) | 3 | ...
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

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
    ("hm_macro_f1", "HM-F1"),
]


HEADLINES = ("all", "hm")  # what a table ranks by and a log line shows: All, or HM for base-to-new


def headline_metric(metrics: Dict[str, Any]) -> Optional[str]:
    """The first of HEADLINES that ``metrics`` has a number for."""
    return next((m for m in HEADLINES if isinstance(metrics.get(m), (int, float))), None)


@dataclass
class Row:
    method: str
    key: str
    seeds: List[int]
    values: Dict[str, List[float]]  # metric -> one value per seed (None dropped)
    label: Optional[str] = None  # e.g. "coop (train.lr=0.01)"; default: the method name

    def stat(self, metric: str) -> Optional[Tuple[float, float, int]]:
        vals = self.values.get(metric) or []
        if not vals:
            return None
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return statistics.fmean(vals), std, len(vals)


def aggregate(records: List[dict], labels: Optional[Dict[str, str]] = None) -> List[Row]:
    """Group records by (method, key); rows sorted by mean "all" accuracy (base-to-new: HM), best first."""
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
        rows.append(Row(method, key, [r["seed"] for r in recs], dict(values), (labels or {}).get(key)))
    rows.sort(key=lambda r: (-next(filter(None, map(r.stat, HEADLINES)), (0.0,))[0], r.method, r.key))
    return rows


def format_cell(stat: Optional[Tuple[float, float, int]], digits: int = 2) -> str:
    if stat is None:
        return "–"
    mean, std, n = stat
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def row_labels(rows: List[Row]) -> List[str]:
    """Each row's label (default: the method), with a short key where two rows would read alike."""
    names = [row.label or row.method for row in rows]
    count: Dict[str, int] = defaultdict(int)
    for name in names:
        count[name] += 1
    return [f"{name} [{row.key[:8]}]" if count[name] > 1 else name for name, row in zip(names, rows)]


def split_by_config(records: List[dict], identity: dict, version: str) -> Tuple[List[dict], List[dict]]:
    """(records of this protocol configuration and code version, the others)."""
    current, other = [], []
    for record in records:
        same = record.get("config", {}).get("protocol") == identity and record.get("code_version") == version
        (current if same else other).append(record)
    return current, other


def flatten(data: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: Dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def differences(config: dict, reference: dict) -> List[str]:
    """``key=value`` for each field of ``reference`` that ``config`` sets otherwise."""
    ours, ref = flatten(config), flatten(reference)
    return [f"{k}={ours.get(k)!r}".replace("'", "") for k in ref if k in ours and ours[k] != ref[k]]


def config_label(record: dict, identity: dict, version: str, references: Dict[str, dict]) -> str:
    """The method, and what differs from its current recipe, protocol config and code version."""
    config = record.get("config", {})
    parts = differences({"": config.get("method", {}), "train": config.get("train") or {}},
                        references.get(record["method"], {}))
    protocol_diff = differences(config.get("protocol", {}), identity)
    if protocol_diff:
        parts.append("protocol " + ", ".join(protocol_diff))
    if record.get("code_version") != version:
        parts.append(f"code {record.get('code_version')}")
    return record["method"] + (f" ({', '.join(p.lstrip('.') for p in parts)})" if parts else "")


def markdown_table(rows: List[Row], digits: int = 2) -> str:
    columns = [(k, title) for k, title in COLUMNS if any(r.stat(k) for r in rows)]
    header = ["Method", "Seeds"] + [title for _, title in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(columns)) + "|"]
    for label, row in zip(row_labels(rows), rows):
        cells = [label, str(len(row.seeds))] + [format_cell(row.stat(k), digits) for k, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
