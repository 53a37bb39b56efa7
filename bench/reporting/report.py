"""A paper table from a report spec and a results table: selection, mean ± std, marks and tests.

Each (row, protocol) takes the results of the row's method as the protocol is configured now and
with the row's ``set`` values, at the current code version.  A row that lacks a seed on some
protocol is *incomplete*: its numbers are shown but it is not ranked, marked or tested::

    report = build_report(spec, load_results(["results"]), view_of, __version__, cards)
    report.cells[("coop", "places_lt", "all")]     # Cell(values={1: 40.2, 2: 40.9, 3: 40.5})
    report.best[("places_lt", "all")]              # {"coop": "bold", "zeroshot": "underline"}
    report.daggers                                  # cells not significantly below the best
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from bench.config.catalog import match_protocols
from bench.config.overrides import reference
from bench.core.errors import BenchError
from bench.records.headline import COST_DIGITS, DETERMINISTIC, LOWER_IS_BETTER, headline_metric
from .leaderboard import current_version, mean_std, metric_title, other_seeds
from .papers import listed, paper_notes, paper_number, reported_value
from .selection import check_settings, found_elsewhere, seed_values, selected, titled, unmatched_columns
from .figurespec import Point, expanded
from .reportspec import ReportSpec, RowSpec
from .rowlabels import label_series, repeated_rows, row_label
from .results import CELL, INFO
from .stats import Comparison, Friedman, against, friedman, holm, mean_interval, paired

MEAN = "Mean"  # the column averaging the protocols
SEEDS_HINT = "the spec's 'seeds' or --set protocol.seeds=[...] counts them"


@dataclass
class Column:
    """A column group: one protocol, or the per-seed mean of several (a spec's ``mean_of``)."""

    name: str
    members: List[str]  # the protocols it reads
    metrics: Optional[List[str]] = None  # None: the spec's
    pattern: str = ""  # a mean's glob: the paper's own Avg is filed under it on method cards
    label: str = ""  # its header: the spec's label, or the protocol's (empty: a part of its name)
    sources: Dict[str, Tuple[str, dict]] = field(default_factory=dict)  # member -> (protocol, overrides)

    @property
    def is_mean(self) -> bool:
        return bool(self.pattern)


@dataclass
class Cell:
    values: Dict[int, float] = field(default_factory=dict)  # seed -> value
    reported: Optional[float] = None  # the paper's number
    paths: Dict[int, str] = field(default_factory=dict)  # seed -> its result file (for figures)
    # where the paper's number comes from: "" printed (or none), "dash" the paper printed "–" (its card's
    # note says why), "computed" the mean of the paper's numbers in the row, which the paper does not print
    paper: str = ""

    @property
    def mean(self) -> Optional[float]:  # on every ranking comparison: the mean alone
        return statistics.fmean(self.values.values()) if self.values else None

    @property
    def std(self) -> Optional[float]:  # sample std (n - 1); 0 for one seed
        stat = mean_std(self.values.values())
        return stat and stat[1]

    @property
    def gap(self) -> Optional[float]:
        return None if self.mean is None or self.reported is None else self.mean - self.reported


@dataclass
class Report:
    spec: ReportSpec
    rows: List[RowSpec]
    groups: List[Column]  # the column groups shown
    metrics: Dict[str, List[str]]  # column group -> the metrics shown
    read: Dict[str, List[str]]  # protocol -> the metrics read (a mean_of column reads its members')
    seeds: Dict[str, List[int]]  # protocol or column group -> the seeds each row needs
    cells: Dict[Tuple[str, str, str], Cell]  # (row, protocol or column group or Mean, metric)
    incomplete: Dict[str, List[str]]  # row -> what it lacks
    best: Dict[Tuple[str, str], Dict[str, str]] = field(default_factory=dict)  # column -> row -> bold/underline
    daggers: set = field(default_factory=set)  # (row, protocol, metric)
    versus: Dict[Tuple[str, str], Dict[str, Tuple[Comparison, Optional[float]]]] = field(default_factory=dict)
    friedman: Optional[Friedman] = None
    intervals: Dict[str, Optional[Tuple[float, float, str]]] = field(default_factory=dict)  # row -> CI of its Mean
    notes: List[str] = field(default_factory=list)
    paper_notes: List[str] = field(default_factory=list)  # the method cards' notes on the paper numbers shown
    row_labels: Dict[str, str] = field(default_factory=dict)  # row name -> how tables name it
    # column group -> evaluation -> how tables head it (the protocol's evaluation labels: caltech101 -> Caltech101)
    metric_labels: Dict[str, Dict[str, str]] = field(default_factory=dict)
    thresholds: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # column group -> (many, few) thresholds
    empty: set = field(default_factory=set)  # (protocol, metric) with no number by construction (IR10's few)
    # rows with no result of ours at all but the paper's numbers (Candle where it cannot run): paper rows only
    paper_only: List[str] = field(default_factory=list)
    unmatched: List[str] = field(default_factory=list)  # why columns without a number have none
    other_seeds: List[str] = field(default_factory=list)  # results of seeds not the report's, left out
    title: str = ""  # the spec's title, naming the backbones that ran (:func:`titled`)
    points: Dict[str, Point] = field(default_factory=dict)  # a sweep's row -> its panel, series and x
    series_labels: Dict[str, str] = field(default_factory=dict)  # a sweep's series (spec row) -> its label
    # a sweep's row that reads the very results of an earlier one (the default value, in each panel) -> that row
    same_as: Dict[str, str] = field(default_factory=dict)

    @property
    def protocols(self) -> List[str]:  # the column groups' names, in order
        return [group.name for group in self.groups]

    @property
    def columns(self) -> List[Tuple[str, str]]:
        """The columns shown: a column no record has a number for (IR10's few) is left out."""
        return [c for c in self.all_columns if c not in self.empty]

    @property
    def all_columns(self) -> List[Tuple[str, str]]:
        cols = [(p, m) for p in self.protocols for m in self.metrics[p]]
        if self.has_mean:
            cols += [(MEAN, m) for m in self.mean_metrics]
        return cols

    @property
    def mean_metrics(self) -> List[str]:
        return [m for m in self.metrics[self.protocols[0]] if all(m in self.metrics[p] for p in self.protocols)]

    @property
    def has_mean(self) -> bool:
        return self.spec.average and len(self.protocols) > 1 and bool(self.mean_metrics)

    def complete(self) -> List[str]:
        """The rows ranked and tested: with every result, and each set of results once."""
        return [r.name for r in self.rows
                if r.name not in self.incomplete and r.name not in self.paper_only and r.name not in self.same_as]


def expand_columns(spec: ReportSpec, sets: Optional[dict] = None) -> List[Column]:
    """The column groups of a spec: a group per matched protocol, one per ``mean_of``; a protocol run
    with overrides (the column's ``set``, on top of ``sets`` from the command line) is its own member,
    named ``places_lt [backbone.model=RN50]``."""
    groups: Dict[str, Column] = {}
    for column in spec.columns:
        found = match_protocols(column.pattern)
        if column.mean_of is None and column.label and len(found) > 1:
            raise BenchError(f"report column '{column.pattern}': a label heads one protocol; the columns of a glob "
                             "are headed by each protocol's own label")
        overrides = {**(sets or {}), **column.set}
        sources = {reference(name, overrides): (name, overrides) for name in found}
        names = list(sources)
        made = ([Column(column.name, names, column.metrics, column.mean_of, sources=sources)]
                if column.mean_of is not None else
                [Column(name, [name], column.metrics, label=column.label or "", sources={name: sources[name]})
                 for name in names])
        for group in made:
            if group.name in groups and (group.is_mean or groups[group.name].is_mean) or group.name == MEAN:
                raise BenchError(f"report column '{group.name}' is named twice (give the mean_of column a label)")
            groups.setdefault(group.name, group)
    read = {p for group in groups.values() for p in group.members}
    clash = [g.name for g in groups.values() if g.is_mean and g.name in read]
    if clash:
        raise BenchError(f"report column '{clash[0]}': a mean_of label must not be a protocol's name")
    return list(groups.values())


def needed_metrics(groups: List[Column], metrics: Dict[str, List[str]]) -> Dict[str, List[str]]:
    """Protocol -> the metrics its column groups show."""
    needed: Dict[str, List[str]] = {}
    for group in groups:
        for protocol in group.members:
            needed[protocol] = list(dict.fromkeys(needed.get(protocol, []) + metrics[group.name]))
    return needed


def build_report(spec: ReportSpec, results, view_of: Callable[..., dict], version: str,
                 cards: Mapping[str, object], sets: Optional[dict] = None) -> Report:
    """The report of ``spec`` over ``results``; ``view_of(protocol, overrides)`` gives a protocol's view,
    ``sets`` are protocol overrides for every column (``bench report --set protocol.PATH=VALUE``)."""
    table = results.table
    if table.empty:
        raise BenchError("the results folder holds no readable results; run `bench run` first")
    spec, points = expanded(spec)
    groups = expand_columns(spec, sets)
    sources = {p: source for group in groups for p, source in group.sources.items()}
    protocols = list(dict.fromkeys(p for group in groups for p in group.members))
    views = {p: view_of(*sources[p]) for p in protocols}
    by_name = {views[p]["name"]: views[p] for p in protocols}  # results name protocols by name
    seeds = {p: list(spec.seeds or views[p]["seeds"]) for p in protocols}
    ours = table[table["protocol"].isin(list(by_name))]
    current = ours[ours["code_version"] == [current_version(m, version, by_name[p].get("code_versions"))
                                            for p, m in zip(ours["protocol"], ours["method"])]]
    if current.empty:
        raise BenchError(f"no results of {', '.join(protocols[:3])}{', ...' if len(protocols) > 3 else ''} "
                         f"at code version {version}{found_elsewhere(ours, by_name, version)}; run them with `bench run`")
    # only the report's seeds count (a spec's `seeds`, or the protocol's), for ranking rows and for cells
    allowed: Dict[str, set] = {}
    for p, s in seeds.items():
        allowed.setdefault(views[p]["name"], set()).update(s)
    every_seed = current  # for the note on the seeds left out
    current = current[[seed in allowed[p] for p, seed in zip(current["protocol"], current["seed"])]]
    records = dict(iter(current.groupby(["protocol", "method"], sort=False)))  # (protocol name, method) -> frame
    metrics = {g.name: pick_metrics(g.metrics or spec.metrics,
                                    current[current["protocol"].isin([views[p]["name"] for p in g.members])], g.name)
               for g in groups}
    needed = needed_metrics(groups, metrics)
    rows = select_rows(spec, records, views, cards, needed, lambda: found_elsewhere(ours, by_name, version))
    if spec.reference is not None and spec.reference not in [r.name for r in rows]:
        raise BenchError(f"reference '{spec.reference}' is not one of the report's rows")
    seeds.update({g.name: sorted({s for p in g.members for s in seeds[p]}) for g in groups if g.is_mean})
    report = Report(spec, rows, groups, metrics, needed, seeds, {}, {}, title=titled(spec.title, views), points=points)
    ran = every_seed[every_seed["method"].isin({row.method for row in rows})]
    report.other_seeds = other_seeds(zip(ran["protocol"], ran["seed"]), allowed, SEEDS_HINT)
    for group in groups:  # headers: the spec's label, else the protocol's own
        group.label = group.label or (group.name if group.is_mean else views[group.name].get("label", ""))
    report.row_labels = {row.name: row_label(row, cards.get(row.method)) for row in rows}
    label_series(report, cards)
    report.metric_labels = {g.name: views[g.members[0]].get("metric_labels", {}) for g in groups}
    report.thresholds = {g.name: (ev["many_threshold"], ev["few_threshold"]) for g in groups
                         for ev in [views[g.members[0]].get("identity", {}).get("eval", {})] if "few_threshold" in ev}
    fill_cells(report, records, views, cards)
    report.same_as = repeated_rows(report)
    report.unmatched = unmatched_columns(report, ours, views, version)
    fill_mean_columns(report, views, cards)
    report.paper_notes = paper_notes(report, views, cards)
    add_means(report, views, cards)
    rank_and_test(report)
    return report


def column_name(view: dict, metric: str) -> str:
    """A protocol's metric as a reader knows it: "EuroSAT HM", "CIFAR-100-LT, IR 10 Few"."""
    label = (view.get("metric_labels") or {}).get(metric) or metric_title(metric)
    return f"{view.get('label') or view['name']} {label}"


def select_rows(spec: ReportSpec, records, views: Dict[str, dict], cards, metrics,
                elsewhere: Callable[[], str] = str) -> List[RowSpec]:
    if spec.rows == "all":
        found = rows_with_results(records, views, metrics)
        if not found:
            raise BenchError(f"no method has results of the current configuration of {', '.join(list(views)[:3])}"
                             f"{', ...' if len(views) > 3 else ''}{elsewhere()}")
        return found
    for row in spec.rows:
        if row.method not in cards:
            raise BenchError(f"report row '{row.name}': unknown method '{row.method}' (see `bench list methods`)")
        check_settings(row, list(views.values()))
        tables = sorted({a.table for a in getattr(cards[row.method], "ablations", ())})
        if row.reported_from and row.reported_from not in tables:
            raise BenchError(f"report row '{row.name}': the {row.method} card has no ablation table "
                             f"'{row.reported_from}' (it has: {', '.join(tables) or 'none'})")
    return list(spec.rows)


def rows_with_results(records, views: Dict[str, dict], metrics) -> List[RowSpec]:
    """``rows: all``: each method with results of the current configuration somewhere, best first
    by the mean of each protocol's first metric."""
    scores: Dict[str, List[float]] = {}
    for protocol, view in views.items():
        for (name, method), frame in records.items():
            values = list(seed_values(selected(frame, view, RowSpec(method)), metrics[protocol][0]).values()) \
                if name == view["name"] else []
            if values:
                scores.setdefault(method, []).append(statistics.fmean(values))
    return [RowSpec(m) for m in sorted(scores, key=lambda m: (-statistics.fmean(scores[m]), m))]


def pick_metrics(wanted: Optional[List[str]], records, column: str) -> List[str]:
    have = [c for c in records.columns if c not in (*CELL, *INFO) and records[c].notna().any()]
    if wanted is None:
        head = headline_metric({m: 1.0 for m in have}) if have else None
        return [head or "all"]
    # a metric the records name without a number (few: null where no class is few-shot) is empty
    # by construction: its cells print – ; only a name no record has is a mistake
    named = [c for c in records.columns if c not in (*CELL, *INFO)]
    unknown = [m for m in wanted if m not in named]
    if unknown and have:
        raise BenchError(f"metric {', '.join(map(repr, unknown))} does not exist in the results of '{column}' "
                         f"(they have: {', '.join(have)})")
    return list(wanted)


def fill_cells(report: Report, records, views: Dict[str, dict], cards) -> None:
    report.empty = empty = empty_metrics(report, records, views)
    for row in report.rows:
        lacking, ours, papers = [], False, False
        for protocol, metrics in report.read.items():
            chosen = selected(records.get((views[protocol]["name"], row.method)), views[protocol], row)
            if chosen is not None:  # two columns of one protocol (other overrides) may read other seeds
                chosen = chosen[chosen["seed"].isin(report.seeds[protocol])]
            paths = {} if chosen is None else dict(zip(chosen["seed"].tolist(), chosen["path"].tolist()))
            for metric in metrics:
                paper, dash = paper_number(row, protocol, metric, cards.get(row.method), report.spec.reported,
                                           views[protocol])
                cell = Cell(seed_values(chosen, metric), paper, paths, "dash" if dash else "")
                report.cells[(row.name, protocol, metric)] = cell
                ours = ours or bool(paths)
                papers = papers or paper is not None or dash
                # a seed lacks a result when it has no record; a record without this metric (few: null
                # where no class is few-shot, no epochs for a method that does not train) is empty
                missing = [s for s in report.seeds[protocol] if s not in cell.values and s not in cell.paths]
                if missing and (protocol, metric) not in empty:
                    lacking.append(f"{column_name(views[protocol], metric)}: seed{'s' * (len(missing) > 1)} "
                                   f"{', '.join(map(str, missing))}")
        if papers and not ours:  # no result of ours: the paper's row only, not an incomplete row of dashes
            report.paper_only.append(row.name)
        elif lacking:
            report.incomplete[row.name] = lacking
    if report.paper_only:
        labels = [report.row_labels.get(name, name) for name in report.paper_only]
        report.notes.append(f"{listed(labels)}: the paper's numbers only, with no result of ours")


def empty_metrics(report: Report, records, views: Dict[str, dict]) -> set:
    """``(protocol, metric)`` pairs no record of the protocol has a number for (IR10's few): a cell
    there is empty by construction, not a missing seed."""
    return {(protocol, metric) for protocol, metrics in report.read.items() for metric in metrics
            if not any(frame[metric].notna().any() for (p, _), frame in records.items()
                       if p == views[protocol]["name"] and metric in frame.columns)}


def mean_cell(cells: List[Cell], reported: Optional[float] = None) -> Cell:
    """Per seed, the average of ``cells`` over the seeds they share (so it can be tested paired by seed);
    the paper's value is ``reported`` (its printed average), or else the mean of theirs when each has
    one, marked as computed."""
    common = set.intersection(*(set(c.values) for c in cells))
    papers = [c.reported for c in cells]
    computed = reported is None and all(p is not None for p in papers)
    return Cell({s: statistics.fmean(c.values[s] for c in cells) for s in sorted(common)},
                statistics.fmean(papers) if computed else reported, paper="computed" if computed else "")


def fill_mean_columns(report: Report, views: Dict[str, dict], cards) -> None:
    """``mean_of`` columns; a paper's own Avg (filed under the glob) beats the mean of its columns."""
    for group in filter(lambda g: g.is_mean, report.groups):
        for row in report.rows:
            for metric in report.metrics[group.name]:
                printed = reported_value(row, group.pattern, metric, cards.get(row.method), report.spec.reported,
                                         views[group.members[0]])
                cells = [report.cells[(row.name, p, metric)] for p in group.members]
                report.cells[(row.name, group.name, metric)] = mean_cell(cells, printed)
        report.notes.append(f"{group.name}: per seed, the mean over its {len(group.members)} protocols")


def add_means(report: Report, views: Dict[str, dict], cards) -> None:
    """The Mean column: per seed, the average over the column groups; the paper's number is its printed
    average where the card files one under the spec's one glob (LAMP Table 1's Average)."""
    if not report.has_mean:
        return
    report.empty |= {(MEAN, m) for m in report.mean_metrics if any((p, m) in report.empty for p in report.protocols)}
    columns = report.spec.columns
    glob = columns[0].protocols if len(columns) == 1 and columns[0].protocols and "*" in columns[0].protocols else None
    view = views[report.groups[0].members[0]]
    for row in report.rows:
        for metric in report.mean_metrics:
            printed = reported_value(row, glob, metric, cards.get(row.method), report.spec.reported, view) \
                if glob else None
            report.cells[(row.name, MEAN, metric)] = mean_cell([report.cells[(row.name, p, metric)]
                                                                for p in report.protocols], printed)
        first = report.mean_metrics[0]
        samples = [list(report.cells[(row.name, p, first)].values.values()) for p in report.protocols]
        seed_means = list(report.cells[(row.name, MEAN, first)].values.values())
        report.intervals[row.name] = mean_interval(samples, seed_means) if row.name not in report.incomplete else None


def rank_and_test(report: Report) -> None:
    spec, ranked = report.spec, report.complete()
    for column in report.columns:
        cells = {r: report.cells[(r, *column)] for r in ranked}
        sign = 1 if column[-1] in LOWER_IS_BETTER else -1  # seconds and parameters: the fewest is best
        order = sorted((r for r in ranked if cells[r].mean is not None), key=lambda r: sign * cells[r].mean)
        digits = COST_DIGITS.get(column[-1], spec.digits)
        printed = {r: round(cells[r].mean, digits) for r in order}  # ties as printed share a mark
        top = sorted(set(printed.values()), key=lambda v: sign * v)[:2]
        report.best[column] = {r: "bold" if printed[r] == top[0] else "underline" for r in order if printed[r] in top}
        if column[-1] in DETERMINISTIC:  # a parameter count has no seed-to-seed spread to test
            continue
        if order:
            mark_not_below_best(report, column, order, cells)
        if spec.reference in ranked:
            values = {r: cells[r].values for r in ranked}
            report.versus[column] = against(values, spec.reference, spec.test, spec.alpha)
    if spec.reference is not None and spec.reference not in ranked:
        report.notes.append(f"no tests against {spec.reference}: its results are incomplete")
    first = report.metrics[report.protocols[0]][0]
    if all(first in report.metrics[p] for p in report.protocols):
        report.friedman = friedman({r: [report.cells[(r, p, first)].mean for p in report.protocols] for r in ranked},
                                   spec.alpha)


def mark_not_below_best(report: Report, column, order: List[str], cells: Dict[str, Cell]) -> None:
    """† on each row whose difference from the best is not significant (Holm over the column)."""
    best, others = order[0], [r for r in order if report.best[column].get(r) != "bold"]  # ties are bold
    tests = [paired(cells[r].values, cells[best].values, report.spec.test, report.spec.alpha, len(others))
             for r in others]
    for row, p in zip(others, holm([t.p for t in tests])):
        if p is not None and p >= report.spec.alpha:
            report.daggers.add((row, *column))
    untested = [t.note for t in tests if t.p is None]
    if untested and not any(n.startswith("tests: ") for n in report.notes):
        report.notes.append(f"tests: {untested[0]}")
