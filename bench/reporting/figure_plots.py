"""A figure spec drawn as the paper prints it (matplotlib): at one column's width (3.3 in) or the text's
(6.9 in), every text at 7.5 pt, the Okabe-Ito colours with line styles and markers (readable in grey),
the cards' labels, the paper's y range where the spec gives it, and the paper's own numbers as open
diamonds; each figure is written as vector PDF and as PNG::

    write_figure(report, "figures")      # figures/cpt_figure4.pdf, figures/cpt_figure4.png

The numbers come from :mod:`bench.reporting.figures` (tested there); this module only draws them.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import List, Optional

from bench.core.errors import BenchError
from bench.records.headline import COST_DIGITS
from .figures import (band_over_seeds, bar_values, column_label, epoch_curves, heat_grid, panel_title, panels_of,
                      seed_points, similarity_matrices, sweep_series)
from .figurespec import value_text
from .leaderboard import mean_std
from .plots import FONT, PALETTE, WIDTHS, band, pyplot, style
from .report import Report

MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*"]
FILLS = [c for c in PALETTE if c != "#000000"]  # a black bar would hide its hatch
HATCHES = ["", "//", "..", "xx", "\\\\", "--", "++", "oo"]  # bars stay apart in grey too
PANEL_HEIGHT = 1.9  # inches per row of panels
RC = {"font.size": FONT, "axes.titlesize": FONT, "axes.labelsize": FONT, "xtick.labelsize": FONT,
      "ytick.labelsize": FONT, "legend.fontsize": FONT, "figure.titlesize": FONT, "pdf.fonttype": 42,
      "axes.linewidth": 0.6, "lines.linewidth": 1.1, "lines.markersize": 3.5}


def grid(plt, panels: int, width: str, extra_height: float = 0.35):
    """A figure of ``panels`` axes at the printed width, two to a row in a column, four in the text."""
    cols = min(panels, 2 if width == "column" else 4)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTHS[width], PANEL_HEIGHT * rows + extra_height),
                             layout="constrained", squeeze=False)
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:panels])


def lettered(ax, i: int, panels: int, title: str) -> None:
    ax.set_title(f"({chr(97 + i)}) {title}" if panels > 1 else title)


def math_text(label: str) -> str:
    """``λ_TETF`` typeset with a subscript (matplotlib's mathtext, in the text font); any other label,
    ``samples_per_cluster`` or ``accuracy (%)``, as it is."""
    return re.sub(r"(\S)_(\w+)", r"$\\mathregular{\1_{\2}}$", label) if re.fullmatch(r"\S_\w+", label) else label


def tick_text(value) -> str:
    """A tick label as short as it goes: 5e-4 rather than 0.0005."""
    if isinstance(value, float) and value and not 1e-2 <= abs(value) < 1e4:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return value_text(value)


def y_axis(ax, report: Report) -> None:
    figure = report.spec.figure
    ax.set_ylabel(math_text(figure.ylabel or "accuracy (%)"))
    if figure.ylim:
        ax.set_ylim(*figure.ylim)


def legend_below(fig, ax_or_handles, width: str) -> None:
    handles, labels = (ax_or_handles if isinstance(ax_or_handles, tuple) else ax_or_handles.get_legend_handles_labels())
    unique = dict(zip(labels, handles))
    if unique:
        fig.legend(unique.values(), unique.keys(), loc="outside lower center", frameon=False,
                   ncol=min(len(unique), 2 if width == "column" else 5))


def paper_handle(plt):
    return plt.matplotlib.lines.Line2D([], [], marker="D", linestyle="none", markerfacecolor="none", color="black",
                      label="paper (reported)")


def paper_marks(ax, xs: list, marks: list, color: str) -> bool:
    """The paper's numbers as open diamonds at ``xs``; whether there were any."""
    paper = [(x, m.paper) for x, m in zip(xs, marks) if m.paper is not None]
    if paper:
        ax.plot(*zip(*paper), marker="D", linestyle="none", markerfacecolor="none", color=color)
    return bool(paper)


def percentages(report: Report) -> bool:
    """Whether every metric drawn is a percentage (a band or error bar then stays within [0, 100])."""
    return all(m not in COST_DIGITS for metrics in report.metrics.values() for m in metrics)


def positions(values: list, numeric_scale: bool) -> list:
    return list(values) if numeric_scale else list(range(len(values)))


def draw_sweep(plt, report: Report, width: str):
    figure = report.spec.figure
    fig, axes = grid(plt, len(figure.panels), width)
    handles, papers = {}, False
    for p, (ax, panel) in enumerate(zip(axes, figure.panels)):
        lettered(ax, p, len(axes), " ".join(column_label(report, g) for g in report.protocols))
        if panel.is_heatmap:
            draw_heat(fig, ax, report, p)
            continue
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in panel.values)
        xs = positions(panel.values, numeric)
        for i, (name, marks) in enumerate(sweep_series(report, p).items()):
            mean = [math.nan if m.mean is None else m.mean for m in marks]
            line, = ax.plot(xs, mean, marker=MARKERS[i % len(MARKERS)], label=name, **style(i))
            ax.fill_between(xs, *band(mean, [m.std or 0.0 for m in marks], percentages(report)),
                            color=line.get_color(), alpha=0.15, linewidth=0)
            papers = paper_marks(ax, xs, marks, line.get_color()) or papers
            handles[name] = line
        if numeric and panel.xscale == "log":
            ax.set_xscale("log", base=2 if all(float(v).is_integer() for v in panel.values) else 10)
        ax.set_xticks(xs, [tick_text(v) for v in panel.values])
        ax.minorticks_off()
        ax.set_xlabel(math_text(panel.x_label))
        y_axis(ax, report)
    if papers:
        handles["paper (reported)"] = paper_handle(plt)
    legend_below(fig, (list(handles.values()), list(handles)), width)
    return fig


def draw_heat(fig, ax, report: Report, p: int) -> None:
    import numpy

    panel = report.spec.figure.panels[p]
    xs, ys, means = heat_grid(report, p)
    data = numpy.array([[math.nan if v is None else v for v in line] for line in means])
    image = ax.imshow(data, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(xs)), [tick_text(x) for x in xs])
    ax.set_yticks(range(len(ys)), [tick_text(y) for y in ys])
    ax.set_xlabel(math_text(panel.x_label))
    ax.set_ylabel(math_text(panel.y_label))
    if report.spec.figure.annotate and cell_inches(fig, ax, len(xs)) >= ANNOTATE_INCHES:
        middle = numpy.nanmean(data) if numpy.isfinite(data).any() else 0.0
        for (r, c), v in numpy.ndenumerate(data):
            if math.isfinite(v):  # dark cells of viridis take white text
                ax.text(c, r, f"{v:.1f}", ha="center", va="center", color="white" if v < middle else "black")
    group, metric = panels_of(report)[0]
    fig.colorbar(image, ax=ax, label=math_text(report.spec.figure.ylabel or panel_title(report, group, metric)),
                 shrink=0.9)


ANNOTATE_INCHES = 0.3  # a cell narrower than this cannot hold "72.5" at 7.5 pt: the table has the numbers


def cell_inches(fig, ax, cells: int) -> float:
    """The width of one heat-map cell on the page, once the layout has placed the axes."""
    fig.get_layout_engine().execute(fig)
    return ax.get_position().width * fig.get_figwidth() / cells


def draw_bars(plt, report: Report, width: str):
    groups = [g for g in report.protocols if bar_values(report, g)]
    fig, axes = grid(plt, len(groups), width)
    papers, handles = False, {}
    for k, (ax, group) in enumerate(zip(axes, groups)):
        rows = bar_values(report, group)
        metrics = [m.x for m in next(iter(rows.values()))]
        step = 0.8 / len(rows)
        for i, (name, marks) in enumerate(rows.items()):
            xs = [j + (i - (len(rows) - 1) / 2) * step for j in range(len(marks))]
            ours = [(x, m.mean, m.std or 0.0) for x, m in zip(xs, marks) if m.mean is not None]
            look = {"facecolor": FILLS[i % len(FILLS)], "hatch": HATCHES[i % len(HATCHES)], "edgecolor": "black",
                    "linewidth": 0.4}
            low, high = band([v for _, v, _ in ours], [s for _, _, s in ours], percentages(report))
            errors = [[v - lo for (_, v, _), lo in zip(ours, low)], [hi - v for (_, v, _), hi in zip(ours, high)]]
            ax.bar([o[0] for o in ours], [o[1] for o in ours], step, yerr=errors if ours else None,
                   error_kw={"linewidth": 0.6}, **look)
            handles[name] = plt.matplotlib.patches.Patch(label=name, **look)  # rows with paper numbers only too
            papers = paper_marks(ax, xs, marks, "black") or papers
        headers = report.spec.headers
        ax.set_xticks(range(len(metrics)), [headers.get(m) or report.metric_labels.get(group, {}).get(m)
                                            or panel_title(report, group, m).split()[-1] for m in metrics])
        lettered(ax, k, len(axes), column_label(report, group))
        y_axis(ax, report)
    if papers:
        handles["paper (reported)"] = paper_handle(plt)
    legend_below(fig, (list(handles.values()), list(handles)), width)
    return fig


def draw_seeds(plt, report: Report, width: str):
    panels = [(key, rows) for key, rows in seed_points(report).items() if rows]
    fig, axes = grid(plt, len(panels), width)
    for k, (ax, ((group, metric), rows)) in enumerate(zip(axes, panels)):
        for i, (name, values) in enumerate(rows.items()):
            ys = [values[s] for s in sorted(values)]
            spread = [i + 0.25 * (j / max(len(ys) - 1, 1) - 0.5) for j in range(len(ys))]  # seeds side by side
            color = PALETTE[i % len(PALETTE)]
            ax.plot(spread, ys, marker=MARKERS[i % len(MARKERS)], linestyle="none", color=color, alpha=0.8)
            mean, std, _ = mean_std(ys)
            ax.errorbar([i + 0.3], [mean], yerr=[std], fmt="_", color="black", capsize=2, linewidth=0.8)
        ax.set_xticks(range(len(rows)), list(rows), rotation=25, ha="right")
        ax.set_xlim(-0.5, len(rows) - 0.3)
        lettered(ax, k, len(axes), panel_title(report, group, metric))
        y_axis(ax, report)
    fig.suptitle("each seed a point; the bar: mean ± std over seeds")
    return fig


def draw_epochs(plt, report: Report, width: str):
    panels = list(epoch_curves(report).items())
    if not panels:
        raise BenchError("no result of this figure has per-epoch numbers: run it with "
                         "--set protocol.eval.per_epoch=true (bench run --report SPEC does)")
    fig, axes = grid(plt, len(panels), width)
    for k, (ax, ((group, metric), rows)) in enumerate(zip(axes, panels)):
        for i, (name, curves) in enumerate(rows.items()):
            mean, std = band_over_seeds(curves)
            xs = list(range(1, len(mean) + 1))
            line, = ax.plot(xs, mean, label=f"{name} (n={len(curves)})", marker=MARKERS[i % len(MARKERS)],
                            markevery=max(1, len(xs) // 8), **style(i))
            ax.fill_between(xs, *band(mean, std, percentages(report)), color=line.get_color(), alpha=0.15,
                            linewidth=0)
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole: no tick at 2.5
        ax.set_xlabel("epoch")
        lettered(ax, k, len(axes), panel_title(report, group, metric))
        y_axis(ax, report)
    legend_below(fig, axes[0], width)
    return fig


def draw_similarity(plt, report: Report, width: str):
    """A matrix per row and column (the columns' matrices one after another), on one colour scale."""
    matrices = similarity_matrices(report)
    if not matrices:
        raise BenchError("no result of this figure has stored text features: run it with "
                         "--set protocol.eval.text_features=true (bench run --report SPEC does)")
    shown = [(group, name, entry) for group, rows in matrices.items() for name, entry in rows.items()]
    fig, axes = grid(plt, len(shown), width, extra_height=0.1)
    values = [v for _, _, (_, m, _) in shown for line in m for v in line]
    image = None
    for k, (ax, (group, name, (classes, matrix, n))) in enumerate(zip(axes, shown)):
        image = ax.imshow(matrix, cmap="viridis", vmin=min(values), vmax=1.0)
        ticks = range(0, len(classes), max(1, len(classes) // 10))
        ax.set_xticks(ticks, [str(t + 1) for t in ticks])
        ax.set_yticks(ticks, [str(t + 1) for t in ticks])
        where = f", {column_label(report, group)}" if len(matrices) > 1 else ""
        lettered(ax, k, len(axes), f"{name}{where} (n={n})")
    fig.colorbar(image, ax=axes, label="cosine similarity", shrink=0.9)
    return fig


DRAW = {"sweep": draw_sweep, "bars": draw_bars, "seeds": draw_seeds, "epochs": draw_epochs,
        "similarity": draw_similarity}


def overlapping(labels) -> bool:
    """Whether two of the drawn labels meet (the renderer must have drawn them): level labels whose
    boxes overlap, or turned ones closer, across their slant, than a line of text is high."""
    shown = [t for t in labels if t.get_visible() and t.get_text()]
    if not shown or not shown[0].get_rotation():
        boxes = [t.get_window_extent() for t in shown]
        return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    ends = sorted(t.get_window_extent().x1 for t in shown)  # each label ends at its tick
    across = math.sin(math.radians(shown[0].get_rotation()))
    height = shown[0].get_fontsize() * shown[0].figure.dpi / 72
    return any((b - a) * across < height for a, b in zip(ends, ends[1:]))


def unclash_ticks(fig) -> None:
    """Turn the x tick labels of an axis whose labels would overlap (5e-4 beside 1e-3 on a log axis):
    slanted, or upright where slanting is not enough."""
    for angle in (40, 90):
        fig.canvas.draw()
        crowded = [ax for ax in fig.axes if overlapping(ax.get_xticklabels())]
        for ax in crowded:
            for text in ax.get_xticklabels():
                text.set_rotation(angle)
                text.set_horizontalalignment("right" if angle < 90 else "center")
                text.set_rotation_mode("anchor" if angle < 90 else "default")


def write_figure(report: Report, folder, formats=("pdf", "png"), width: Optional[str] = None) -> List[Path]:
    """Draw the report's figure into ``folder`` as ``<spec name>.<format>`` for each format (PDF: vector;
    PNG at 300 dpi); ``width`` overrides the spec's (column or text)."""
    plt, out = pyplot(), Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BenchError(f"--plots '{folder}': cannot make the folder ({err.strerror or err})") from None
    with plt.rc_context(RC):
        fig = DRAW[report.spec.figure.kind](plt, report, width or report.spec.figure.width)
        unclash_ticks(fig)
        written = [out / f"{report.spec.name or 'figure'}.{fmt}" for fmt in formats]
        for path in written:
            fig.savefig(path, dpi=300)
    plt.close(fig)
    return written
