"""The numbers a figure spec plots (:mod:`bench.reporting.figurespec`), read from a report's cells and,
for curves over epochs and similarity matrices, from the result files; each is also a table
(:func:`figure_frames`, beside the report's own), so a reader can cite what the figure shows::

    sweep_series(report, 0)      # {"CPT HM": [Mark(x=0.05, mean=72.1, std=0.4, paper=None), ...]}
    seed_points(report)          # {("b2n_cpt/eurosat/tau0.25", "hm"): {"CPT": {1: 80.2, 2: 79.9, ...}}}
    figure_frames(report)        # {"Per-seed values": DataFrame, ...}

Drawing is :mod:`bench.reporting.figure_plots`.
"""
from __future__ import annotations

import statistics
from typing import Dict, List, NamedTuple, Optional, Tuple

from bench.core.errors import BenchError

from .figurespec import value_text
from .leaderboard import mean_std, metric_title
from .report import Report
from .results import require_pandas

SHOWN_CLASSES = 12  # a similarity matrix of at most this many classes is also printed as a table


class Mark(NamedTuple):
    x: object
    mean: Optional[float]
    std: Optional[float]
    paper: Optional[float]  # the paper's number at this point, where its card has one


def panels_of(report: Report) -> List[Tuple[str, str]]:
    """(column group, metric) pairs: each a panel of a seeds/epochs/bars figure, or a line of a sweep."""
    return [(group, metric) for group in report.protocols for metric in report.metrics[group]
            if (group, metric) not in report.empty]


def column(report: Report, group: str):
    """The column group named ``group`` (its label, its member protocols)."""
    return next(g for g in report.groups if g.name == group)


def column_label(report: Report, group: str) -> str:
    """A column as the table heads it ("EuroSAT"), not by its name with its overrides."""
    return column(report, group).label or group


def panel_title(report: Report, group: str, metric: str) -> str:
    """"EuroSAT HM": the column's header and the metric's, as the table heads them."""
    label = column_label(report, group)
    shown = report.spec.headers.get(metric) or report.metric_labels.get(group, {}).get(metric) or metric_title(metric)
    return f"{label} {shown}" if len(report.protocols) > 1 or len(report.metrics[group]) > 1 else label


def label(report: Report, row: str) -> str:
    return report.row_labels.get(row, row)


def sweep_series(report: Report, panel: int) -> Dict[str, List[Mark]]:
    """One line per series (a spec row, and column and metric when there are several) of a sweep's
    ``panel``: the mean, std and paper number at each value of the switch, in the spec's order."""
    out: Dict[str, List[Mark]] = {}
    several = len(panels_of(report)) > 1
    for row in report.rows:
        point = report.points.get(row.name)
        if point is None or point.panel != panel:
            continue
        series = report.series_labels.get(point.series, point.series)
        for group, metric in panels_of(report):
            name = f"{series}, {panel_title(report, group, metric)}" if several else series
            cell = report.cells[(row.name, group, metric)]
            out.setdefault(name, []).append(Mark(point.x, cell.mean, cell.std, cell.reported))
    return out


def heat_grid(report: Report, panel: int) -> Tuple[list, list, List[List[Optional[float]]]]:
    """(x values, y values, the mean at each [y][x]) of a heat-map panel: its one series in its one
    column and metric (None where no result)."""
    spec_panel = report.spec.figure.panels[panel]
    if len(panels_of(report)) != 1:
        shown = ", ".join(panel_title(report, g, m) for g, m in panels_of(report)) or "none with results"
        raise BenchError(f"report '{report.spec.name}': a heat map draws one column and metric; this one has "
                         f"{shown} (give the spec one column and `metrics: [one]`)")
    group, metric = panels_of(report)[0]
    points = [(p, row) for row, p in report.points.items() if p.panel == panel]
    means = {(p.x, p.y): report.cells[(row, group, metric)].mean for p, row in points}
    return (spec_panel.values, spec_panel.by_values,
            [[means.get((x, y)) for x in spec_panel.values] for y in spec_panel.by_values])


def seed_points(report: Report) -> Dict[Tuple[str, str], Dict[str, Dict[int, float]]]:
    """Each row's value at each seed, per (column, metric): the dots of a distribution figure."""
    return {(group, metric): {label(report, row.name): dict(report.cells[(row.name, group, metric)].values)
                              for row in report.rows if report.cells[(row.name, group, metric)].values}
            for group, metric in panels_of(report)}


def bar_values(report: Report, group: str) -> Dict[str, List[Mark]]:
    """Row -> a bar per metric of ``group`` (mean, std, the paper's number), rows with a number."""
    out = {}
    for row in report.rows:
        marks = [Mark(metric, cell.mean, cell.std, cell.reported) for metric in report.metrics[group]
                 if (group, metric) not in report.empty for cell in [report.cells[(row.name, group, metric)]]]
        if any(m.mean is not None or m.paper is not None for m in marks):
            out[label(report, row.name)] = marks
    return out


def read_fields(path: str, name: str):
    """A result file's field ``name`` (None when the file has none, or is damaged since it was read)."""
    from bench.records.schema import read_record

    record, problem = read_record(path)
    return None if problem is not None else record.get(name)


def epoch_curves(report: Report) -> Dict[Tuple[str, str], Dict[str, List[List[float]]]]:
    """Per (column, metric), each row's curve over training epochs at each seed (the records of a run
    with ``--set protocol.eval.per_epoch=true``); rows without such records are left out."""
    out: Dict[Tuple[str, str], Dict[str, List[List[float]]]] = {}
    for group, metric in panels_of(report):
        members = column(report, group).members  # one: a spec refuses mean_of columns here
        for row in report.rows:
            paths = report.cells[(row.name, members[0], metric)].paths
            curves = [[entry["metrics"].get(metric) for entry in epochs] for seed in sorted(paths)
                      for epochs in [read_fields(paths[seed], "epoch_metrics")] if epochs]
            curves = [c for c in curves if c and None not in c]
            if curves:
                out.setdefault((group, metric), {})[label(report, row.name)] = curves
    return out


def band_over_seeds(curves: List[List[float]]) -> Tuple[List[float], List[float]]:
    """Mean and sample std at each epoch over the seeds' curves, up to the shortest (std 0 for one)."""
    length = min(len(c) for c in curves)
    stats = [mean_std([c[e] for c in curves]) for e in range(length)]
    return [s[0] for s in stats], [s[1] for s in stats]


def cosine_matrix(features: List[List[float]]) -> List[List[float]]:
    """Pairwise cosine similarity of class text features (rows normalised here, whatever was stored)."""
    import numpy

    f = numpy.asarray(features, dtype=float)
    f = f / numpy.linalg.norm(f, axis=1, keepdims=True)
    return (f @ f.T).tolist()


def similarity_matrices(report: Report) -> Dict[str, Dict[str, Tuple[List[str], List[List[float]], int]]]:
    """Per column, each row's class-by-class cosine similarity of its final text features (the records
    of a run with ``--set protocol.eval.text_features=true``), averaged over seeds: (classes, matrix,
    seeds).  The evaluation is the figure's, else the protocol's first."""
    import numpy

    out: Dict[str, Dict[str, Tuple[List[str], List[List[float]], int]]] = {}
    for group in report.protocols:
        protocol = column(report, group).members[0]  # one: a spec refuses mean_of columns here
        for row in report.rows:
            paths = report.cells[(row.name, protocol, report.metrics[group][0])].paths
            picked = [entry for texts in (read_fields(paths[s], "text_features") for s in sorted(paths)) if texts
                      for entry in [evaluation_of(report, texts)] if entry]
            if picked:
                classes = picked[0]["classes"]
                mats = [cosine_matrix(p["features"]) for p in picked if p["classes"] == classes]
                out.setdefault(group, {})[label(report, row.name)] = (
                    classes, numpy.mean(mats, axis=0).tolist(), len(mats))
    return out


def evaluation_of(report: Report, texts: Dict[str, Optional[dict]]) -> Optional[dict]:
    """The stored text features of the figure's evaluation (an unknown name is an error naming those
    stored), else of the first; None where the method has none independent of the image."""
    wanted = report.spec.figure.evaluation
    if wanted is None:
        return next(iter(texts.values()), None)
    if wanted not in texts:
        raise BenchError(f"report '{report.spec.name}': figure.evaluation '{wanted}' is not an evaluation of "
                         f"the protocol (its results store: {', '.join(texts)})")
    return texts[wanted]


def effective_rank(matrix: List[List[float]]) -> float:
    """exp of the entropy of the normalised singular values (Roy and Vetterli, 2007): how many
    directions the similarity structure spans (a simplex ETF of K classes: K - 1)."""
    import numpy

    s = numpy.linalg.svd(numpy.asarray(matrix), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(numpy.exp(-(p * numpy.log(p)).sum()))


def off_diagonal(matrix: List[List[float]]) -> List[float]:
    return [v for i, line in enumerate(matrix) for j, v in enumerate(line) if i != j]


def figure_frames(report: Report) -> Dict[str, object]:
    """The tables of what a figure plots beyond the report's main table: per-seed values, curves over
    epochs, heat-map grids, similarity statistics (and small matrices)."""
    figure = getattr(report.spec, "figure", None)
    if figure is None:
        return {}
    make = {"seeds": seed_frames, "epochs": epoch_frames, "similarity": similarity_frames, "sweep": heat_frames}
    return make.get(figure.kind, lambda r: {})(report)


def fmt(value: Optional[float], digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def seed_frames(report: Report) -> Dict[str, object]:
    """A row per seed (then the mean and std) and a column per method: narrow enough for one column."""
    pandas, d, out = require_pandas(), report.spec.digits, {}
    for (group, metric), rows in seed_points(report).items():
        seeds = sorted({s for values in rows.values() for s in values})
        body = [[f"seed {s}", *(fmt(values.get(s), d) for values in rows.values())] for s in seeds]
        body += [["Mean", *(fmt(statistics.fmean(v.values()), d) for v in rows.values())],
                 ["Std", *(fmt(mean_std(v.values())[1], d) for v in rows.values())]]
        out[f"Per-seed values, {panel_title(report, group, metric)}"] = pandas.DataFrame(body, columns=["", *rows])
    return out


def epoch_frames(report: Report) -> Dict[str, object]:
    """A row per epoch and a column per method (a curve of 15 epochs prints down the page, not across)."""
    pandas, d, out = require_pandas(), report.spec.digits, {}
    for (group, metric), rows in epoch_curves(report).items():
        bands = {f"{name} (n={len(rows[name])})": band_over_seeds(curves) for name, curves in rows.items()}
        epochs = max(len(mean) for mean, _ in bands.values())
        body = [[e + 1, *(f"{mean[e]:.{d}f} ± {std[e]:.{d}f}" if e < len(mean) else "–" for mean, std in bands.values())]
                for e in range(epochs)]
        out[f"{panel_title(report, group, metric)} after each epoch, mean ± std over seeds"] = pandas.DataFrame(
            body, columns=["Epoch", *bands])
    return out


def similarity_frames(report: Report) -> Dict[str, object]:
    """Per column: a summary row per method (off-diagonal statistics, effective rank), then the
    matrices themselves where they are small enough to print."""
    pandas, out = require_pandas(), {}
    for group, rows in similarity_matrices(report).items():
        where = column_label(report, group)
        body, matrices, count = [], {}, 0
        for name, (classes, matrix, n) in rows.items():
            off, count = off_diagonal(matrix), len(classes)
            body.append([name, n, *(f"{v:.3f}" for v in (statistics.fmean(off), mean_std(off)[1], min(off), max(off))),
                         f"{effective_rank(matrix):.2f}"])
            if len(classes) <= SHOWN_CLASSES:  # columns numbered as the figure's axes, the names in the rows
                matrices[f"{name}: cosine similarity of the class text features ({where})"] = pandas.DataFrame(
                    [[f"{i} {c}", *(f"{v:.2f}" for v in line)] for i, (c, line) in enumerate(zip(classes, matrix), 1)],
                    columns=["Class", *map(str, range(1, len(classes) + 1))])
        title = f"Cosine similarity between the text features of {count} classes, off the diagonal ({where})"
        out[title] = pandas.DataFrame(body, columns=["Method", "n", "Mean", "Std", "Min", "Max", "Eff. rank"])
        out.update(matrices)
    return out


def heat_frames(report: Report) -> Dict[str, object]:
    pandas, d, out = require_pandas(), report.spec.digits, {}
    for p, panel in enumerate(report.spec.figure.panels):
        if not panel.is_heatmap:
            continue
        xs, ys, grid = heat_grid(report, p)
        group, metric = panels_of(report)[0]
        out[f"{panel_title(report, group, metric)} by {panel.x_label} (columns) and {panel.y_label} (rows)"] = \
            pandas.DataFrame([[f"{panel.y_label}={value_text(y)}", *(fmt(v, d) for v in line)]
                              for y, line in zip(ys, grid)], columns=["", *(value_text(x) for x in xs)])
    return out
