"""Figures of a report (matplotlib, PNG or PDF): the long-tail curve, Many/Medium/Few bars and a
critical-difference diagram.  Each figure has a data function (tested) and a thin drawing one::

    write_plots(report, "figures", fmt="pdf")
    # figures/longtail-<protocol>.pdf, figures/groups-<protocol>.pdf, figures/critical-difference.pdf
"""
from __future__ import annotations

import math

import re
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.core.errors import BenchError
from .report import Report

GROUPS = [("many", "Many"), ("medium", "Medium"), ("few", "Few")]
WIDTHS = {"column": 3.3, "text": 6.9}  # inches: one column and the whole text of a two-column paper
FONT = 7.5  # points: figures are drawn at the size they print, so no text goes below 7 pt
# Okabe and Ito's colour-blind-safe palette, with line styles on top: ten methods stay apart in grey too
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
STYLES = ["-", "--", "-.", ":"]


def style(i: int) -> dict:
    """The i-th method's colour and line style (a style changes each time the palette comes round)."""
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": STYLES[(i // len(PALETTE) + i) % len(STYLES)]}


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
        if not counts or not accuracy:  # (read_record refuses lists of other lengths)
            return None
        rows.append((counts, accuracy))
    if not rows or any(len(other) != len(rows[0][0]) for other, _ in rows):  # seeds of other class counts
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


def band(mean: List[float], std: List[float], percent: bool = True) -> Tuple[List[float], List[float]]:
    """The mean ± one std; a percentage's within [0, 100] (an accuracy band cannot leave it)."""
    low, high = (0.0, 100.0) if percent else (-math.inf, math.inf)
    return [max(low, m - s) for m, s in zip(mean, std)], [min(high, m + s) for m, s in zip(mean, std)]


def boundaries(counts: List[int], many: int, few: int) -> List[Tuple[float, str]]:
    """Where the Many, Medium and Few classes meet on the long-tail curve's x axis (classes by training
    images, most first): (position between two classes, the group that starts there)."""
    cuts = [(next((i for i, c in enumerate(counts) if c <= many), None), "Medium"),
            (next((i for i, c in enumerate(counts) if c < few), None), "Few")]
    return [(i - 0.5, name) for i, name in cuts if i is not None and 0 < i < len(counts)]


def draw_longtail(plt, curves: Dict[str, Tuple[List[int], List[List[float]]]], title: str, path: Path,
                  width: str = "column", thresholds: Optional[Tuple[int, int]] = None) -> None:
    """Per-class accuracy smoothed over neighbouring classes (raw lines of 1,000 classes are
    unreadable), the band one std over seeds within [0, 100]; the x axis is the classes by training
    images, with the Many/Medium/Few boundaries marked; the legend under the axes."""
    fig, ax = plt.subplots(figsize=(WIDTHS[width], 2.6 + 0.12 * len(curves)))
    window, counts = 1, []
    for i, (name, (counts, per_seed)) in enumerate(curves.items()):
        window = max(1, len(counts) // 25)
        mean, std = smoothed(per_seed, window)
        xs = range(len(counts))
        line, = ax.plot(xs, mean, label=name, linewidth=1.1, **style(i))
        ax.fill_between(xs, *band(mean, std), color=line.get_color(), alpha=0.12, linewidth=0)
    for x, group in boundaries(counts, *thresholds) if thresholds and counts else []:
        ax.axvline(x, color="grey", linewidth=0.6, linestyle=":")
        ax.text(x, 1.0, f" {group}", transform=ax.get_xaxis_transform(), fontsize=FONT, va="bottom", color="grey")
    ax.set_ylim(0, 100)
    ax.set_xlabel(f"classes by training images, most first (mean over {window})", fontsize=FONT)
    ax.set_ylabel("accuracy (%)", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.set_title(title, fontsize=FONT + 0.5, pad=12)
    ax.legend(fontsize=FONT, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2 if width == "column" else 4,
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def draw_groups(plt, bars: Dict[str, List[Tuple[float, float]]], title: str, path: Path,
                width: str = "column") -> None:
    fig, ax = plt.subplots(figsize=(WIDTHS[width], 2.6))
    step = 0.8 / len(GROUPS)
    for g, (_, group) in enumerate(GROUPS):
        xs = [i + (g - 1) * step for i in range(len(bars))]
        low = [min(v[g][1], v[g][0]) for v in bars.values()]  # the error bar stays within [0, 100]
        high = [min(v[g][1], 100 - v[g][0]) for v in bars.values()]
        ax.bar(xs, [v[g][0] for v in bars.values()], step, yerr=[low, high], label=group,
               color=PALETTE[g], error_kw={"linewidth": 0.6})
    ax.set_xticks(range(len(bars)), list(bars), rotation=30, ha="right", fontsize=FONT)
    ax.tick_params(axis="y", labelsize=FONT)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%), mean ± std", fontsize=FONT)
    ax.set_title(title, fontsize=FONT + 0.5, pad=22)
    ax.legend(fontsize=FONT, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def draw_cd(plt, ranks: Dict[str, float], bars: List[List[str]], note: str, path: Path, width: str = "column") -> None:
    order = sorted(ranks, key=lambda m: (ranks[m], m))
    fig, ax = plt.subplots(figsize=(WIDTHS[width], 1.0 + 0.2 * len(order)))
    k = len(order)
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-len(bars) - 1, len(order) + 1)
    ax.hlines(len(order), 1, k, color="black")
    for r in range(1, k + 1):
        ax.text(r, len(order) + 0.3, str(r), ha="center", fontsize=FONT)
    for i, m in enumerate(order):
        ax.plot([ranks[m]] * 2, [len(order), len(order) - 1 - i], color="gray", linewidth=0.8)
        ax.text(ranks[m], len(order) - 1 - i, f" {m} ({ranks[m]:.2f})", fontsize=FONT, va="center")
    for b, run in enumerate(bars):
        ax.hlines(-b - 0.5, ranks[run[0]], ranks[run[-1]], color="black", linewidth=3)
    lines = ["mean rank over protocols (1 = best);", "bars join methods not significantly different",
             *textwrap.wrap(note, 60)]
    ax.set_title("\n".join(lines), fontsize=FONT)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


CD_PROTOCOLS = 5  # below this, Friedman's test cannot reach significance: ranks over fewer say little


def write_plots(report: Report, folder, fmt: str = "png", log=lambda line: None, width: str = "column") -> List[Path]:
    """Every figure the report's data allows, at one column's width or the text's (``width``), named by
    the cards' labels and the protocols' titles; returns the files written (``log`` hears what is left out)."""
    plt, out = pyplot(), Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BenchError(f"--plots '{folder}': cannot make the folder ({err.strerror or err})") from None
    written = []
    label = lambda row: report.row_labels.get(row, row)  # noqa: E731
    titles = {group.name: group.label or group.name for group in report.groups}
    for protocol in report.protocols:
        curves = {}
        for row in report.rows:
            cell = report.cells[(row.name, protocol, report.metrics[protocol][0])]
            curve = longtail_curve([cell.paths[s] for s in sorted(cell.paths)])
            if curve is not None:
                curves[label(row.name)] = curve
        if curves:
            written.append(out / f"longtail-{safe_name(protocol)}.{fmt}")
            draw_longtail(plt, curves, titles[protocol], written[-1], width, report.thresholds.get(protocol))
        bars = group_bars(report, protocol)
        if bars:
            written.append(out / f"groups-{safe_name(protocol)}.{fmt}")
            draw_groups(plt, {label(row): v for row, v in bars.items()}, titles[protocol], written[-1], width)
    fr = report.friedman
    if fr is not None and len(fr.mean_ranks) >= 2 and len(report.protocols) < CD_PROTOCOLS:
        log(f"no critical-difference diagram: it ranks methods over protocols, and {len(report.protocols)} "
            f"protocol(s) are too few (it needs {CD_PROTOCOLS})")
    elif fr is not None and len(fr.mean_ranks) >= 2 and not any(p is not None for p in fr.pairwise.values()):
        log(f"no critical-difference diagram: {fr.note or 'no pair of methods was tested'}")  # not one bar over all
    elif fr is not None and len(fr.mean_ranks) >= 2:
        written.append(out / f"critical-difference.{fmt}")
        note = f"Friedman p = {fr.p:.3g}" if fr.p is not None else fr.note
        ranks = {label(row): rank for row, rank in fr.mean_ranks.items()}
        pairs = {(label(a), label(b)): p for (a, b), p in fr.pairwise.items()}
        draw_cd(plt, ranks, cliques(ranks, pairs, report.spec.alpha), note, written[-1], width)
    return written
