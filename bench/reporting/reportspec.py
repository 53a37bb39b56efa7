"""Report specs: a paper table as YAML (``bench/reports/*.yaml``), checked before any result is read.

::

    title: "MDPR Tables 2-3: long-tailed classification"
    columns: [cifar100_lt_ir10, cifar100_lt_ir50, 'b2n_lamp/*/imb10']   # protocols, globs, tables
    metrics: [all, many, medium, few]       # sub-columns of each protocol (default: its headline)
    rows: [zeroshot, coop, {method: lamp, label: "MPP only", set: {use_msp: false, use_lbo: false}}]
    reference: coop                          # every row is tested against it, per column
    reported: true                           # the papers' numbers (method cards) and the gap to ours

A column may instead average protocols, seed by seed, as papers' "Avg" columns do::

    columns: [{mean_of: 'b2n_cpt/*/tau0.25', metrics: [hm], label: B2N HM}, xd_dg_cpt/tau0.25]

and any column may name its own ``metrics``, and protocol overrides as ``--set protocol.PATH=VALUE`` gives
them (``{protocols: places_lt, set: {backbone.model: RN50}, label: RN50}``; the column reads the
results run with them).  A protocol may be a YAML path, or a cell of a grid file given by path.
``rows: all`` takes every method with results; ``extra_rows`` lists rows beyond the paper's that
``bench report --rows all`` adds after them (a seed table's spec prints the paper's rows by default).
A row's ``set`` selects the results run with
those ``--set`` values (``lamp.use_lbo=false`` is ``{use_lbo: false}``, ``coop.train.lr=0.01`` is
``{train.lr: 0.01}``).  The paper's numbers of such a row come from the method card's ablation
table named by ``reported_from`` (``reported_from: "LAMP Table 7"``), or from its own ``reported``.
A ``figure:`` block makes the spec a figure of the paper as well (:mod:`bench.reporting.figurespec`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Union


from bench.config.catalog import available_reports, reports_dir
from bench.core.coerce import from_dict
from bench.core.errors import BenchError, ConfigError
from bench.core.namedfiles import read_named_text
from bench.core.safeyaml import load_yaml
from bench.core.registry import suggest
from .figurespec import FigureSpec
from .stats import ALPHA

# what a LaTeX \label may hold here: a brace or backslash would end it and run TeX of the spec's choosing
LABEL = re.compile(r"[A-Za-z0-9:._-]+")
LABEL_CHARS = "letters, digits and : . _ -"


@dataclass
class ColumnSpec:
    protocols: Optional[str] = None  # a protocol, glob or table: one column group per protocol
    mean_of: Optional[str] = None  # a glob or table: one column group, the per-seed mean of its protocols
    metrics: Optional[List[str]] = None  # default: the spec's metrics
    label: Optional[str] = None  # the header: of one protocol (default: its label), of a mean_of ("mean of <glob>")
    set: Dict[str, object] = field(default_factory=dict)  # protocol overrides: {backbone.model: RN50}

    def validate(self, where: str) -> None:
        from bench.config.overrides import check_path

        if (self.protocols is None) == (self.mean_of is None):
            raise ConfigError(where or "columns", "give a column either 'protocols' or 'mean_of'")
        for path in self.set:
            try:
                check_path(path)
            except BenchError as err:
                raise ConfigError(f"{where}.set", str(err).replace("--set 'protocol.", "'")) from None
        if self.metrics is not None and not self.metrics:
            raise ConfigError(where or "columns", "name at least one metric, or leave 'metrics' out")

    @property
    def pattern(self) -> str:
        return self.mean_of if self.mean_of is not None else self.protocols

    @property
    def name(self) -> str:
        return self.label or f"mean of {self.mean_of}"


@dataclass
class RowSpec:
    method: str
    label: Optional[str] = None  # default: the method, and its settings
    set: Dict[str, object] = field(default_factory=dict)  # option -> value, as --set gives them
    reported: Dict[str, Dict[str, float]] = field(default_factory=dict)  # protocol -> metric -> paper value
    source: str = ""  # where `reported` comes from (e.g. "LAMP Table 6")
    reported_from: Optional[str] = None  # a table of the method card's ablations, e.g. "LAMP Table 7"

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        settings = ", ".join(f"{k}={v}" for k, v in self.set.items())
        return f"{self.method} ({settings})" if settings else self.method


@dataclass
class ReportSpec:
    title: str
    columns: List[Union[str, ColumnSpec]]
    rows: Union[Literal["all"], List[Union[str, RowSpec]]] = "all"
    # rows the paper does not print that we run beside it (zeroshot, IVLP, ...): shown with --rows all
    extra_rows: List[Union[str, RowSpec]] = field(default_factory=list)
    metrics: Optional[List[str]] = None  # None: each protocol's headline (all, or hm for base-to-new)
    reference: Optional[str] = None  # a row's name: the method, or its label
    reported: bool = True
    # where the papers' numbers go: a block of paper rows under ours, a paper and a gap row under each
    # method, the gap beside each of our numbers, or nowhere (HTML pages keep them with their method)
    paper_rows: Literal["separate", "rows", "inline", "none"] = "separate"
    # wide: a column group per protocol; stacked: a block of rows per protocol, metrics as columns
    layout: Literal["wide", "stacked"] = "wide"
    seeds: Optional[List[int]] = None  # default: each protocol's seeds
    test: Literal["auto", "t", "wilcoxon"] = "auto"
    alpha: float = field(default=ALPHA, metadata={"min": 0.0, "max": 0.5})
    digits: int = field(default=2, metadata={"min": 0, "max": 6})
    average: bool = True  # a Mean column over the protocols (more than one)
    # true: "71.20 ± 0.45"; subscript: the std small under the mean's baseline, so a column is as wide as
    # its mean; false: the mean only (the caption says so)
    std: Union[bool, Literal["subscript"]] = True
    label: Optional[str] = None  # LaTeX \label (default: tab:<the spec's name>)
    caption: Optional[str] = None  # the caption's lead sentence (default: the title)
    headers: Dict[str, str] = field(default_factory=dict)  # a metric's column header, as the paper prints it
    # The page shape, as the paper prints it (LaTeX; panels also in markdown):
    # YAML `float:` (a field named float would shadow the type in this class's annotations)
    float_env: Literal["table", "table*"] = "table"  # one column, or both columns of a two-column page
    panels: int = field(default=1, metadata={"min": 1, "max": 12})  # the columns split into stacked panels
    notes: Literal["below", "inside", "none"] = "below"  # after the float, under the tabular in it, or left out
    font: Literal["normalsize", "small", "footnotesize", "scriptsize"] = "footnotesize"  # 10, 9, 8, 7 pt
    colsep: float = field(default=6.0, metadata={"min": 0.0, "max": 20.0})  # \tabcolsep in pt (LaTeX's: 6)
    # a figure of the paper drawn from the same cells (`bench report SPEC --plots DIR`; bench.reporting.figures)
    figure: Optional[FigureSpec] = None
    name: str = ""  # the spec's file name without .yaml (set by load_spec; not a YAML field)

    def validate(self, where: str) -> None:
        if not self.columns:
            raise ConfigError("columns", "name at least one protocol")
        if self.label is not None and not LABEL.fullmatch(self.label):
            raise ConfigError("label", f"'{self.label[:60]}' is no LaTeX label: use only {LABEL_CHARS} "
                                       "(e.g. tab:mdpr-ir100)")
        self.columns = [ColumnSpec(protocols=c) if isinstance(c, str) else c for c in self.columns]
        if self.metrics is not None and not self.metrics:
            raise ConfigError("metrics", "name at least one metric, or leave it out for the headline")
        if self.panels > 1 and self.layout == "stacked":
            raise ConfigError("panels", "split a wide table's columns; a stacked table is already a block per "
                                        "protocol (leave panels out, or use layout: wide)")
        self.extra_rows = [RowSpec(r) if isinstance(r, str) else r for r in self.extra_rows]
        if self.extra_rows and self.rows == "all":
            raise ConfigError("extra_rows", "'rows: all' already takes every method; list the paper's rows, "
                                            "or leave extra_rows out")
        if self.figure is not None and self.figure.kind == "sweep" and self.rows == "all":
            raise ConfigError("rows", "a sweep's rows are the series it crosses with the switch values: list them")
        if self.figure is not None:
            self.figure.check_columns(self.columns)
        if self.rows != "all":
            self.rows = [RowSpec(r) if isinstance(r, str) else r for r in self.rows]
            names = [r.name for r in [*self.rows, *self.extra_rows]]
            twice = sorted({n for n in names if names.count(n) > 1})
            if not self.rows or twice:
                raise ConfigError("rows", f"rows need distinct names (give a label): {', '.join(twice)}"
                                  if twice else "name at least one method, or 'all'")


def load_spec(name_or_path: str) -> ReportSpec:
    """A spec by name (``bench/reports/<name>.yaml``) or path, with every field checked."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = reports_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise BenchError(f"unknown report '{name_or_path}'{suggest(name_or_path, available_reports())} "
                             f"(shipped: {', '.join(available_reports())}; or give a YAML path)")
    if not path.exists():  # a device or FIFO: read_named_text says what it is
        raise BenchError(f"report spec '{path}' does not exist")
    text = read_named_text(path, "report spec", hint="it must be a YAML text file")
    data = load_yaml(text, f"report spec '{path}'")
    if not isinstance(data, dict):
        raise BenchError(f"report spec '{path}': expected a mapping with title, columns and rows")
    for own in ("name", "float_env"):
        if own in data:
            raise BenchError(f"report spec '{path}': unknown field '{own}'"
                             + (" (a spec is named by its file)" if own == "name" else "; did you mean 'float'?"))
    data = {("float_env" if key == "float" else key): value for key, value in data.items()}
    try:
        spec = from_dict(ReportSpec, data, "")  # field errors name the field: "columns: expected a list"
    except ConfigError as err:
        raise BenchError(f"report spec '{path}': {str(err).replace('float_env', 'float')}") from None
    spec.name = spec_name(path)
    return spec


def spec_name(path) -> str:
    """A spec's name: its file name without .yaml (``cpt_b2n_tau0.25``, whose stem would lose ``.25``)."""
    name = Path(path).name
    return name[: -len(Path(name).suffix)] if Path(name).suffix in (".yaml", ".yml") else name
