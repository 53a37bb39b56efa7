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
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from bench.records.headline import COSTS, F1, harmonic_mean, headline_metric, shown_by_default

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


@dataclass
class Row:
    method: str
    key: str
    seeds: List[int]
    values: Dict[str, List[float]]  # metric -> one value per seed (None dropped)
    label: Optional[str] = None  # e.g. "coop (train.lr=0.01)"; default: the method name
    order: List[str] = field(default_factory=list)  # the record's column_order: evaluations, group means

    @property
    def headline(self) -> Optional[Tuple[float, float, int]]:
        """The mean, std and count of the metric this row ranks by (headline_metric)."""
        metric = headline_metric({k: v[0] for k, v in self.values.items() if v}, self.order)
        return self.stat(metric) if metric else None

    def stat(self, metric: str) -> Optional[Tuple[float, float, int]]:
        return mean_std(self.values.get(metric) or [])


def mean_std(values) -> Optional[Tuple[float, float, int]]:
    """Mean, sample standard deviation (n - 1; 0 for one value) and count, or None for no values."""
    values = list(values)
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


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
        rows.append(Row(method, key, [r["seed"] for r in recs], dict(values), (labels or {}).get(key),
                        list(recs[0].get("column_order", []))))
    rows.sort(key=lambda r: (-(r.headline or (0.0,))[0], r.method, r.key))
    return rows


def table_columns(rows: List[Row]) -> List[Tuple[str, str]]:
    """(metric, title) of every metric some row has: All, then each evaluation and group mean
    (cross-dataset protocols) in the order the records list them, then the rest of COLUMNS."""
    present = list(dict.fromkeys(k for r in rows for k in r.values if r.stat(k)))
    known = dict(COLUMNS)
    order = list(dict.fromkeys(name for r in rows for name in r.order))
    extra = sorted((k for k in present if k not in known and shown_by_default(k)),
                   key=lambda k: (order.index(k) if k in order else len(order), k))
    extra = [(k, metric_title(k)) for k in extra]
    static = [(k, title) for k, title in COLUMNS if k in present]
    return [c for c in static if c[0] == "all"] + extra + [c for c in static if c[0] != "all"]


def metric_title(metric: str) -> str:
    """A metric's column title: "Many", "HM"; a group mean ``xd_mean`` is "XD mean"."""
    known = {**dict(COLUMNS), **COSTS}
    if metric in known:
        return known[metric]
    if metric.endswith(F1):  # an evaluation's macro-F1: "XD mean F1", "eurosat F1"
        return f"{metric_title(metric[:-len(F1)])} F1"
    if metric.endswith("_with_source"):  # a protocol's own average over its groups and the source
        return f"{metric[:-12].upper()} mean with source"
    return f"{metric[:-5].upper()} mean" if metric.endswith("_mean") else metric


def format_value(value: Optional[float], digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_cell(stat: Optional[Tuple[float, float, int]], digits: int = 2) -> str:
    if stat is None:
        return format_value(None)
    mean, std, n = stat
    return format_value(mean, digits) + ("" if n == 1 else f" ± {std:.{digits}f}")


def row_labels(rows: List[Row]) -> List[str]:
    """Each row's label (default: the method), with a short key where two rows would read alike."""
    names = [row.label or row.method for row in rows]
    count: Dict[str, int] = defaultdict(int)
    for name in names:
        count[name] += 1
    return [f"{name} [{row.key[:8]}]" if count[name] > 1 else name for name, row in zip(names, rows)]


def leaderboard_problem(record: dict) -> Optional[str]:
    """Why a leaderboard cannot use a record the schema accepts: an HM without the base and new accuracies it is the
    harmonic mean of (written by an older bench or a plugin), which a base-to-new table averages."""
    metrics = record["metrics"]
    if metrics.get("hm") is not None and (metrics.get("base") is None or metrics.get("new") is None):
        return "has metrics.hm without metrics.base and metrics.new (written by an older bench or a plugin?)"
    return None


def other_seeds(cells: Iterable[Tuple[str, int]], seeds: Dict[str, Iterable[int]], how: str) -> List[str]:
    """A note per protocol whose results (``(protocol, seed)`` pairs) include seeds outside its
    ``seeds``: they are left out, so that ``bench leaderboard`` and ``bench report`` average the same
    seeds (a stray ``bench run --seeds 9`` does not join the protocol's); ``how`` says how to count them."""
    allowed = {protocol: set(listed) for protocol, listed in seeds.items()}
    extra: Dict[str, Dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for protocol, seed in cells:
        if seed not in allowed[protocol]:
            extra[protocol][seed] += 1
    return [f"left out {sum(found.values())} result(s) of '{protocol}' with seed(s) {seed_list(found)}: not among "
            f"its seeds {seed_list(allowed[protocol])} ({how})" for protocol, found in extra.items()]


def seed_list(seeds: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(seeds)))


def current_version(method: str, version: str, code_versions: Optional[Dict[str, str]] = None) -> str:
    """The code version a method's current results carry: ``version`` (bench's), or for a plugin's
    method (and its variants) the one its protocol view names."""
    versions = code_versions or {}
    return versions.get(method, versions.get(method.split("@", 1)[0], version))


def split_by_config(records: List[dict], identity: dict, version: str,
                    code_versions: Optional[Dict[str, str]] = None) -> Tuple[List[dict], List[dict]]:
    """(records of this protocol configuration and code version, the others)."""
    current, other = [], []
    for record in records:
        same = (record.get("config", {}).get("protocol") == identity
                and record.get("code_version") == current_version(record["method"], version, code_versions))
        (current if same else other).append(record)
    return current, other


def flatten(data: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: Dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


# Opt-in variants that leave the reference recipe when off (so they are not in it): a record that
# turns one on differs from the reference although no reference field does.
VARIANTS = ("train.feature_cache",)


def differences(config: dict, reference: dict) -> List[str]:
    """``key=value`` for each field of ``reference`` that ``config`` sets otherwise, and each
    variant (:data:`VARIANTS`) ``config`` turns on that ``reference`` does not name."""
    ours, ref = flatten(config), flatten(reference)
    changed = [k for k in ref if k in ours and ours[k] != ref[k]]
    changed += [k for k in VARIANTS if ours.get(k) and k not in ref]
    return [f"{k}={ours.get(k)!r}".replace("'", "") for k in changed]


def config_label(record: dict, identity: dict, version: str, references: Dict[str, dict],
                 code_versions: Optional[Dict[str, str]] = None) -> str:
    """The method, and what differs from its current recipe, protocol config and code version."""
    config = record.get("config", {})
    parts = differences({"": config.get("method", {}), "train": config.get("train") or {}},
                        references.get(record["method"], {}))
    protocol_diff = differences(config.get("protocol", {}), identity)
    if protocol_diff:
        parts.append("protocol " + ", ".join(protocol_diff))
    if record.get("code_version") != current_version(record["method"], version, code_versions):
        parts.append(f"code {record.get('code_version')}")
    return record["method"] + (f" ({', '.join(p.lstrip('.') for p in parts)})" if parts else "")


def markdown_table(rows: List[Row], digits: int = 2) -> str:
    columns = table_columns(rows)
    header = ["Method", "Seeds"] + [title for _, title in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(columns)) + "|"]
    for label, row in zip(row_labels(rows), rows):
        cells = [table_text(label), str(len(row.seeds))] + [format_cell(row.stat(k), digits) for k, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_text(text: str) -> str:
    """A label in a markdown cell: on one line, its bars not splitting the cell (a --set value may hold either)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def varying_parts(names: List[str]) -> List[str]:
    """Each name's '/'-parts that differ between the names: the column titles of a table."""
    split = [name.split("/") for name in names]
    width = min(len(parts) for parts in split)
    keep = [i for i in range(width) if len({parts[i] for parts in split}) > 1]
    return ["/".join(parts[i] for i in keep) or name for parts, name in zip(split, names)]


def across_protocols(tables: Dict[str, List[Row]], digits: int = 2) -> str:
    """One row per method over several protocols (a paper table): each protocol's headline (mean
    over seeds), and their average.  Base-to-new tables give both averages the papers use: the
    mean of the per-dataset HMs (LAMP, CPT) and the HM of the mean base and mean new (MaPLe README)."""
    names = list(tables)
    labels = list(dict.fromkeys(label for rows in tables.values() for label in row_labels(rows)))
    by_label = {name: dict(zip(row_labels(rows), rows)) for name, rows in tables.items()}
    b2n = all(r.stat("hm") and r.stat("base") and r.stat("new") for rows in tables.values() for r in rows)
    extra = ["Mean base", "Mean new", "Mean HM", "HM of means"] if b2n else ["Mean"]
    header = ["Method"] + varying_parts(names) + extra
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for label in labels:
        rows = [by_label[name].get(label) for name in names]
        heads = [r.headline if r else None for r in rows]
        cells = [format_value(h[0] if h else None, digits) for h in heads]
        if all(heads) and b2n:
            base, new = (statistics.fmean(r.stat(m)[0] for r in rows) for m in ("base", "new"))
            averages = [base, new, statistics.fmean(h[0] for h in heads), harmonic_mean(base, new)]
        elif all(heads):
            averages = [statistics.fmean(h[0] for h in heads)]
        else:
            averages = [None] * len(extra)
        cells += [format_value(a, digits) for a in averages]
        lines.append("| " + " | ".join([table_text(label)] + cells) + " |")
    return "\n".join(lines)


def not_loaded(record: dict, views: Dict[str, dict]) -> bool:
    """Whether the method of ``record`` (or its base, for a variant) is not among the methods its
    protocol's view was made with (a plugin's method whose plugin is not loaded)."""
    view = views.get(record["protocol"]) or next(iter(views.values()))
    return "methods" in view and record["method"].split("@", 1)[0] not in view["methods"]


def not_loaded_notes(records: List[dict], views: Dict[str, dict]) -> List[str]:
    """A line for each method of ``records`` that is not loaded, and how many results of it are hidden."""
    from collections import Counter

    missing = Counter(r["method"].split("@", 1)[0] for r in records if not_loaded(r, views))
    return [f"method '{method}' is not loaded: pass --plugin FILE_OR_MODULE (or install its package) to see its "
            f"{n} result(s)" for method, n in sorted(missing.items())]


def why_not_current(records: List[dict], views: Dict[str, dict], version: Optional[str] = None,
                    shown: int = 3) -> str:
    """Why results found for the protocols of ``views`` are not the current ones: their method is not
    loaded, or how many differ in which protocol fields (with the ``--set`` that selects them) or carry
    another code version."""
    from collections import Counter

    notes = not_loaded_notes(records, views)
    reasons: Counter = Counter()
    loaded = [r for r in records if not not_loaded(r, views)]
    for record in loaded:
        view = views.get(record["protocol"]) or next(iter(views.values()))
        changed = differences(record.get("config", {}).get("protocol", {}), view["identity"])
        if changed:
            reasons["protocol " + ", ".join(changed)] += 1
        elif version is not None and record.get("code_version") != current_version(
                record["method"], version, view.get("code_versions")):
            reasons[f"code version {record.get('code_version')} (this is {version}: run them again)"] += 1
        else:
            reasons["another code version or method setting"] += 1
    parts = [f"{n} with {why}" for why, n in reasons.most_common(shown)]
    more = len(reasons) - shown
    if loaded:
        notes.append(f"found {len(loaded)} result(s) of other configurations: {'; '.join(parts)}"
                     + (f"; and {more} other difference(s)" if more > 0 else "")
                     + ("; select a protocol configuration with --set protocol.PATH=VALUE" if any(
                         w.startswith("protocol ") for w in reasons) else ""))
    return "; ".join(notes)
