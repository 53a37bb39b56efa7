"""Figures of a report (matplotlib, PNG or PDF): the long-tail curve, Many/Medium/Few bars and a
critical-difference diagram.  Each figure has a data function (tested) and a thin drawing one::

    write_plots(report, "figures", fmt="pdf")
    # figures/longtail-<protocol>.pdf, figures/groups-<protocol>.pdf, figures/critical-difference.pdf
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.core.errors import BenchError
from .report import Report

GROUPS = [("many", "Many"), ("medium", "Medium"), ("few", "Few")]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    return plt


def longtail_curve(paths: List[str]) -> Optional[Tuple[List[int], List[List[float]]]]:
    """(training count per class, per-class accuracy of each seed), classes sorted by count (most
    first; classes never trained on or never scored left out); None when the files do not record
    per-class training counts."""
    from bench.records.schema import read_record

    rows = []
    for path in paths:
        record, problem = read_record(path)  # changed or damaged since the report read it: no curve
        if problem is not None:
            return None
        counts, accuracy = record.get("class_train_counts"), record.get("per_class_accuracy")
        if not counts or not accuracy or len(counts) != len(accuracy):
            return None
        rows.append((counts, accuracy))
    if not rows:
        return None
    counts = rows[0][0]
    order = sorted((c for c in range(len(counts)) if counts[c] > 0 and all(acc[c] is not None for _, acc in rows)),
                   key=lambda c: (-counts[c], c))
    return [counts[c] for c in order], [[acc[c] for c in order] for _, acc in rows]


def smoothed(per_seed: List[List[float]], window: int) -> Tuple[List[float], List[float]]:
    """The rolling mean over ``window`` neighbouring classes of each seed's curve, then the mean and
    std over seeds at each class (the std is 0 for one seed)."""
    import pandas

    curves = pandas.DataFrame([pandas.Series(acc).rolling(window, center=True, min_periods=1).mean()
                               for acc in per_seed])
    return curves.mean().tolist(), curves.std(ddof=1).fillna(0.0).tolist()


def group_bars(report: Report, protocol: str) -> Dict[str, List[Tuple[float, float]]]:
    """Row -> (mean, std) of Many, Medium and Few on ``protocol``, for rows with all three."""
    out = {}
    for row in report.rows:
        cells = [report.cells.get((row.name, protocol, metric)) for metric, _ in GROUPS]
        if all(c is not None and c.mean is not None for c in cells):
            out[row.name] = [(c.mean, c.std) for c in cells]
    return out


def cliques(ranks: Dict[str, float], pairwise: Dict[Tuple[str, str], Optional[float]], alpha: float) -> List[List[str]]:
    """Maximal runs of methods, in rank order, whose pairwise differences are all not significant
    (Holm-adjusted p >= alpha, or untested): the bars of a critical-difference diagram."""
    order = sorted(ranks, key=lambda m: (ranks[m], m))

    def apart(a: str, b: str) -> bool:
        p = pairwise.get((a, b), pairwise.get((b, a)))
        return p is not None and p < alpha

    runs = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and not any(apart(order[k], order[j + 1]) for k in range(i, j + 1)):
            j += 1
        if j > i and not any(set(order[i:j + 1]) <= set(r) for r in runs):
            runs.append(order[i:j + 1])
    return runs


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "plot"


def draw_longtail(plt, curves: Dict[str, Tuple[List[int], List[List[float]]]], protocol: str, path: Path) -> None:
    """Per-class accuracy smoothed over neighbouring classes (raw lines of 1,000 classes are
    unreadable), the band one std over seeds; the x axis is the classes by training images."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    window = 1
    for name, (counts, per_seed) in curves.items():
        window = max(1, len(counts) // 25)
        mean, std = smoothed(per_seed, window)
        xs = range(len(counts))
        line, = ax.plot(xs, mean, label=name, linewidth=1.4)
        ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel(f"classes by training images, most first (rolling mean over {window})", fontsize=10)
    ax.set_ylabel("accuracy (%)", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.set_title(protocol, fontsize=11)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_groups(plt, bars: Dict[str, List[Tuple[float, float]]], protocol: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(bars) + 2), 3.5))
    width = 0.8 / len(GROUPS)
    for g, (_, title) in enumerate(GROUPS):
        xs = [i + (g - 1) * width for i in range(len(bars))]
        ax.bar(xs, [v[g][0] for v in bars.values()], width, yerr=[v[g][1] for v in bars.values()], label=title)
    ax.set_xticks(range(len(bars)), list(bars), rotation=30, ha="right", fontsize=9)
    ax.tick_params(axis="y", labelsize=9)
    ax.set_ylabel("accuracy (%), mean ± std over seeds", fontsize=10)
    ax.set_title(protocol, fontsize=11)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_cd(plt, ranks: Dict[str, float], bars: List[List[str]], note: str, path: Path) -> None:
    order = sorted(ranks, key=lambda m: (ranks[m], m))
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.25 * len(order)))
    k = len(order)
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-len(bars) - 1, len(order) + 1)
    ax.hlines(len(order), 1, k, color="black")
    for r in range(1, k + 1):
        ax.text(r, len(order) + 0.3, str(r), ha="center", fontsize=9)
    for i, m in enumerate(order):
        ax.plot([ranks[m]] * 2, [len(order), len(order) - 1 - i], color="gray", linewidth=0.8)
        ax.text(ranks[m], len(order) - 1 - i, f" {m} ({ranks[m]:.2f})", fontsize=9, va="center")
    for b, run in enumerate(bars):
        ax.hlines(-b - 0.5, ranks[run[0]], ranks[run[-1]], color="black", linewidth=3)
    ax.set_title(f"mean rank over protocols (1 = best); bars join methods not significantly different\n{note}",
                 fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


CD_PROTOCOLS = 5  # below this, Friedman's test cannot reach significance: ranks over fewer say little


def write_plots(report: Report, folder, fmt: str = "png", log=lambda line: None) -> List[Path]:
    """Every figure the report's data allows; returns the files written (``log`` hears what is left out)."""
    plt, out = pyplot(), Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BenchError(f"--plots '{folder}': cannot make the folder ({err.strerror or err})") from None
    written = []
    for protocol in report.protocols:
        curves = {}
        for row in report.rows:
            cell = report.cells[(row.name, protocol, report.metrics[protocol][0])]
            curve = longtail_curve([cell.paths[s] for s in sorted(cell.paths)])
            if curve is not None:
                curves[row.name] = curve
        if curves:
            written.append(out / f"longtail-{safe_name(protocol)}.{fmt}")
            draw_longtail(plt, curves, protocol, written[-1])
        bars = group_bars(report, protocol)
        if bars:
            written.append(out / f"groups-{safe_name(protocol)}.{fmt}")
            draw_groups(plt, bars, protocol, written[-1])
    fr = report.friedman
    if fr is not None and len(fr.mean_ranks) >= 2 and len(report.protocols) < CD_PROTOCOLS:
        log(f"no critical-difference diagram: it ranks methods over protocols, and {len(report.protocols)} "
            f"protocol(s) are too few (it needs {CD_PROTOCOLS})")
    elif fr is not None and len(fr.mean_ranks) >= 2 and not any(p is not None for p in fr.pairwise.values()):
        log(f"no critical-difference diagram: {fr.note or 'no pair of methods was tested'}")  # not one bar over all
    elif fr is not None and len(fr.mean_ranks) >= 2:
        written.append(out / f"critical-difference.{fmt}")
        note = f"Friedman p = {fr.p:.3g}" if fr.p is not None else fr.note
        draw_cd(plt, fr.mean_ranks, cliques(fr.mean_ranks, fr.pairwise, report.spec.alpha), note, written[-1])
    return written
