"""A report spec's ``figure:`` block: which figure of the paper the spec draws, and for a sweep the
switches it varies.  A figure spec is a table spec (rows, columns, metrics) with this block; its rows
are the figure's series, and a sweep crosses each with every value of each panel's switch::

    figure:
      kind: sweep               # sweep | bars | seeds | epochs | similarity
      panels:                   # sweep only: one panel per switch (with `by`, a heat map of two)
      - {switch: lambda_tetf, values: [0.05, 0.1, 0.25, 0.5], label: λ_TETF}
      - {switch: top_k, values: [2, 4, 6], by: shared_tokens, by_values: [1, 2, 4], label: K, by_label: S}
      width: column             # column (3.3 in) or text (6.9 in), as the paper prints it
      ylim: [60, 80]            # the paper's y range, where it prints one

    spec, points = expanded(spec)   # a sweep: one row per series and switch value
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Literal, NamedTuple, Optional, Tuple, Union

from bench.core.errors import BenchError, ConfigError

Value = Union[bool, int, float, str]
KINDS = ("sweep", "bars", "seeds", "epochs", "similarity")


@dataclass
class PanelSpec:
    switch: str  # a row option on the x axis, as a row's `set` names it (lambda_tetf, train.epochs)
    values: List[Value]
    label: Optional[str] = None  # the x axis (default: the switch)
    by: Optional[str] = None  # a second switch on the y axis: the panel is a heat map
    by_values: List[Value] = field(default_factory=list)
    by_label: Optional[str] = None
    xscale: Literal["linear", "log"] = "linear"  # log: a grid of doublings (4, 8, 16, 32, 64) or decades

    def validate(self, where: str) -> None:
        if not self.values:
            raise ConfigError(f"{where}.values", "name at least one value of the switch")
        if (self.by is None) != (not self.by_values):
            raise ConfigError(f"{where}.by", "a heat map names its second switch (by) and its values (by_values)")
        if self.by == self.switch:
            raise ConfigError(f"{where}.by", f"a heat map crosses two switches; '{self.by}' is its x switch already")
        if self.xscale == "log" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                            for v in self.values):
            raise ConfigError(f"{where}.xscale", "a log axis takes positive numbers only")
        for name, values in (("values", self.values), ("by_values", self.by_values)):
            shown = [value_text(v) for v in values]
            if len(set(shown)) < len(shown):
                raise ConfigError(f"{where}.{name}", "each value once")

    @property
    def x_label(self) -> str:
        return self.label or self.switch

    @property
    def y_label(self) -> str:
        return self.by_label or self.by or ""

    @property
    def is_heatmap(self) -> bool:
        return self.by is not None


@dataclass
class FigureSpec:
    kind: Literal[KINDS]  # type: ignore[valid-type]
    panels: List[PanelSpec] = field(default_factory=list)  # sweep: the switches
    width: Literal["column", "text"] = "column"  # the printed width: one column, or the whole text
    ylim: Optional[List[float]] = None  # [low, high] of the y axis (default: matplotlib's)
    ylabel: Optional[str] = None  # default: the metric's name
    evaluation: Optional[str] = None  # similarity: whose classes (default: the protocol's first evaluation)
    annotate: bool = True  # heat maps and similarity matrices: the number in each cell

    def validate(self, where: str) -> None:
        if (self.kind == "sweep") != bool(self.panels):
            raise ConfigError(f"{where}.panels", "a sweep names its panels (a switch and its values each)"
                              if self.kind == "sweep" else f"only a sweep has panels (this figure is '{self.kind}')")
        if self.ylim is not None and (len(self.ylim) != 2 or self.ylim[0] >= self.ylim[1]):
            raise ConfigError(f"{where}.ylim", "expected [low, high] with low < high")
        if self.evaluation is not None and self.kind != "similarity":
            raise ConfigError(f"{where}.evaluation", "only a similarity figure picks an evaluation's classes")

    def check_series(self, rows: list) -> None:
        """A heat map is one series' grid: with two series, its cells would need a third axis."""
        if any(p.is_heatmap for p in self.panels) and len(rows) > 1:
            raise ConfigError("figure.panels", f"a heat map draws one series; {len(rows)} rows given "
                                               "(keep one row, or make a spec per row)")

    def check_columns(self, columns: list) -> None:
        """Curves over epochs and similarity matrices are read from one protocol's result files: a
        mean of protocols would average them epoch by epoch or class by class, which no paper draws."""
        if self.kind in ("epochs", "similarity"):
            mean = next((c for c in columns if getattr(c, "mean_of", None) is not None), None)
            if mean is not None:
                raise ConfigError("columns", f"a '{self.kind}' figure reads one protocol per column; "
                                             f"'mean_of: {mean.mean_of}' averages several (name protocols)")


class Point(NamedTuple):
    """Where a sweep's row goes: its panel, its series (the spec's row: its name and the row itself, so
    legends can name it as tables do), its x (and heat-map y) and the setting as labels print it."""

    panel: int
    series: str
    x: Value
    y: Optional[Value] = None
    row: object = None  # the spec's RowSpec this point was crossed from
    shown: str = ""  # "λ_TETF=0.25"


def value_text(value: Value) -> str:
    """A switch value as labels print it: 0.25, 5e-04, 16, true."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expand_rows(rows: list, figure: Optional[FigureSpec]) -> Tuple[list, Dict[str, Point]]:
    """A sweep's rows: each spec row (a series) once per value of each panel's switch, named
    ``"CPT (λ_TETF=0.25)"``, with the switch in its ``set``; other figures' rows as they are."""
    if figure is None or figure.kind != "sweep" or rows == "all":
        return rows, {}
    figure.check_series(rows)
    out, points = [], {}
    for row in rows:
        for p, panel in enumerate(figure.panels):
            grid = [(x, y) for y in (panel.by_values or [None]) for x in panel.values]
            for x, y in grid:
                sets = {panel.switch: x, **({panel.by: y} if panel.by else {})}
                clash = [k for k in sets if k in row.set]
                if clash:
                    raise ConfigError(f"rows.{row.name}", f"sets '{clash[0]}', which the figure sweeps")
                shown = f"{panel.x_label}={value_text(x)}" + (f", {panel.y_label}={value_text(y)}" if panel.by else "")
                name = f"{row.label or row.method} ({shown})"
                out.append(replace(row, label=name, set={**row.set, **sets}))
                points[name] = Point(p, row.name, x, y, row, shown)
    return out, points


def expanded(spec) -> Tuple[object, Dict[str, Point]]:
    """A report spec with a sweep's rows crossed with its switch values (:func:`expand_rows`), and
    where each row goes in the figure (other specs as they are, with no points)."""
    try:
        rows, points = expand_rows(spec.rows, spec.figure)
        if points:
            spec = replace(spec, rows=rows)
            spec.validate("")  # two panels that name a row alike
    except ConfigError as err:
        raise BenchError(f"report spec '{spec.name or spec.title}': {err}") from None
    return spec, points
