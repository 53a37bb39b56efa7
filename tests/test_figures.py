"""Figure specs (bench.reporting.figurespec, figures, figure_plots): the rows a sweep makes, the numbers
each figure plots checked by hand, every shipped figure drawn at its printed size, and a figure run and
drawn end to end through the CLI."""
import copy
import math
import random
import re

import numpy
import pytest
import yaml

from bench.cli import main
from bench.core.coerce import from_dict
from bench.core.errors import BenchError, ConfigError
from bench.reporting.figures import (band_over_seeds, bar_values, cosine_matrix, effective_rank, epoch_curves,
                                     figure_frames, heat_grid, seed_points, similarity_matrices, sweep_series)
from bench.reporting.figurespec import FigureSpec, expand_rows, expanded
from bench.reporting.report import build_report
from bench.reporting.reportspec import ReportSpec, RowSpec, load_spec
from bench.reporting.results import load_results
from bench.config.cards import MethodCard
from test_report import CARDS, VERSION, VIEWS, fabricate, put

SWEEP = {"kind": "sweep", "panels": [{"switch": "n_ctx", "values": [2, 4, 8], "label": "M"},
                                     {"switch": "lr", "values": [0.1, 1.0], "by": "depth", "by_values": [1, 2]}]}


def spec_of(**fields) -> ReportSpec:
    return from_dict(ReportSpec, {"title": "T", "columns": ["smoke"], **fields}, "")


def test_a_sweep_crosses_each_row_with_each_value_of_each_panel():
    spec = spec_of(rows=[{"method": "coop", "label": "CoOp", "set": {"csc": True}}], figure=SWEEP)
    rows, points = expand_rows(spec.rows, spec.figure)
    assert [r.name for r in rows] == ["CoOp (M=2)", "CoOp (M=4)", "CoOp (M=8)", "CoOp (lr=0.1, depth=1)",
                                      "CoOp (lr=1, depth=1)", "CoOp (lr=0.1, depth=2)", "CoOp (lr=1, depth=2)"]
    assert rows[1].set == {"csc": True, "n_ctx": 4} and rows[-1].set == {"csc": True, "lr": 1.0, "depth": 2}
    assert points["CoOp (M=8)"][:4] == (0, "CoOp", 8, None) and points["CoOp (M=8)"].shown == "M=8"
    assert points["CoOp (lr=1, depth=2)"][:4] == (1, "CoOp", 1.0, 2) and points["CoOp (M=2)"].row is spec.rows[0]
    assert expand_rows(spec.rows, None) == (spec.rows, {})  # a table, or another kind of figure: as it is
    clash = spec_of(rows=[{"method": "coop", "set": {"n_ctx": 4}}], figure=SWEEP)
    with pytest.raises(ConfigError, match="sets 'n_ctx', which the figure sweeps"):
        expand_rows(clash.rows, clash.figure)
    twice = spec_of(rows=["coop"], figure={"kind": "sweep", "panels": [{"switch": "n_ctx", "values": [2]}] * 2})
    with pytest.raises(BenchError, match="distinct names"):
        expanded(twice)


@pytest.mark.parametrize("figure, message", [
    ({"kind": "sweep"}, "a sweep names its panels"),
    ({"kind": "bars", "panels": SWEEP["panels"]}, "only a sweep has panels"),
    ({"kind": "sweep", "panels": [{"switch": "a", "values": []}]}, "name at least one value"),
    ({"kind": "sweep", "panels": [{"switch": "a", "values": [1, 1.0]}]}, "each value once"),
    ({"kind": "sweep", "panels": [{"switch": "a", "values": [1], "by": "b"}]}, "its second switch"),
    ({"kind": "sweep", "panels": [{"switch": "a", "values": [1], "by": "a", "by_values": [2]}]}, "crosses two"),
    ({"kind": "sweep", "panels": [{"switch": "a", "values": [0, 1], "xscale": "log"}]}, "positive numbers"),
    ({"kind": "seeds", "ylim": [80, 20]}, "low < high"),
    ({"kind": "seeds", "evaluation": "base"}, "only a similarity figure"),
    ({"kind": "violin"}, "expected one of 'sweep'"),
])
def test_bad_figure_blocks_name_the_field(figure, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        spec_of(rows=["coop"], figure=figure)


def test_a_sweep_needs_its_rows_listed():
    with pytest.raises(ConfigError, match="a sweep's rows are the series"):
        spec_of(figure=SWEEP)


@pytest.fixture
def sweep_folder(tmp_path):
    """coop on smoke at n_ctx 2, 4 (the current setting) and 8; seeds 1-3 each: all = 50 + n_ctx + seed."""
    for n_ctx in (2, 4, 8):
        for seed in (1, 2, 3):
            put(tmp_path, "smoke", "coop", seed, {"all": 50.0 + n_ctx + seed, "many": 60.0}, settings={"n_ctx": n_ctx},
                epoch_metrics=[{"epoch": e, "metrics": {"all": 10.0 * e + seed}} for e in (1, 2, 3)],
                text_features={"smoke": {"classes": ["a", "b", "c"],
                                         "features": [[1, 0], [0, 2], [seed, seed]]}})
    return tmp_path


def report_of(folder, views=VIEWS, **fields):
    spec = from_dict(ReportSpec, {"title": "T", "columns": ["smoke"], "metrics": ["all"], **fields}, "")
    return build_report(spec, load_results([folder]), views.get, VERSION, CARDS)


def test_sweep_series_are_each_points_mean_and_std_over_seeds(sweep_folder):
    figure = {"kind": "sweep", "panels": [{"switch": "n_ctx", "values": [2, 4, 8, 16]}]}
    report = report_of(sweep_folder, rows=[{"method": "coop", "label": "CoOp"}], figure=figure)
    (name, marks), = sweep_series(report, 0).items()
    assert name == "CoOp" and [m.x for m in marks] == [2, 4, 8, 16]
    assert [m.mean for m in marks[:3]] == [54.0, 56.0, 60.0] and marks[0].std == pytest.approx(1.0)
    assert marks[3].mean is None  # n_ctx 16 never ran: a gap in the line, not a zero
    assert marks[1].paper == 79.0 and marks[0].paper is None  # the card's number is of its own setting, n_ctx 4
    two = report_of(sweep_folder, rows=[{"method": "coop", "label": "CoOp"}], metrics=["all", "many"], figure=figure)
    assert list(sweep_series(two, 0)) == ["CoOp, smoke All", "CoOp, smoke Many"]  # a line per metric


def test_a_heat_map_is_indexed_by_its_second_switch_then_its_first(sweep_folder):
    for depth in (1, 2):
        for seed in (1, 2, 3):
            put(sweep_folder, "smoke", "coop", seed, {"all": 10.0 * depth}, settings={"n_ctx": 2, "csc": depth == 2})
    views = copy.deepcopy(VIEWS)
    views["smoke"]["references"]["coop"][""]["csc"] = False  # an option of coop's with a false default
    figure = {"kind": "sweep", "panels": [{"switch": "n_ctx", "values": [2, 4], "by": "csc", "by_values": [False, True]}]}
    report = report_of(sweep_folder, views, rows=[{"method": "coop", "label": "CoOp"}], figure=figure)
    xs, ys, grid = heat_grid(report, 0)
    assert (xs, ys) == ([2, 4], [False, True]) and grid == [[10.0, None], [20.0, None]]
    frame = figure_frames(report)["smoke by n_ctx (columns) and csc (rows)"]
    assert frame.values.tolist() == [["csc=false", "10.00", "–"], ["csc=true", "20.00", "–"]]


def test_a_heat_map_draws_one_series_in_one_column_and_metric(sweep_folder):
    heat = {"kind": "sweep", "panels": [{"switch": "n_ctx", "values": [2, 4], "by": "train.lr", "by_values": [0.1]}]}
    two_rows = spec_of(rows=["coop", "maple"], figure=heat)
    with pytest.raises(ConfigError, match="a heat map draws one series; 2 rows given"):
        expand_rows(two_rows.rows, two_rows.figure)
    report = report_of(sweep_folder, rows=["coop"], metrics=["all", "many"], figure=heat)
    with pytest.raises(BenchError, match="a heat map draws one column and metric; this one has smoke All, smoke Many"):
        heat_grid(report, 0)


def test_a_sweep_names_its_series_by_the_card_and_ranks_the_shared_default_once(sweep_folder):
    """Two panels both reach n_ctx 4 (coop's current setting): the same result files, so the second is
    shown but neither ranked nor tested again; an unlabelled row's series takes the card's label."""
    cards = {**CARDS, "coop": MethodCard("p", "c", label="CoOp", reported=CARDS["coop"].reported)}
    spec = from_dict(ReportSpec, {"title": "T", "columns": ["smoke"], "metrics": ["all"], "rows": ["coop"],
                                  "reference": "coop (n_ctx=2)",
                                  "figure": {"kind": "sweep", "panels": [{"switch": "n_ctx", "values": [2, 4]},
                                                                         {"switch": "n_ctx", "values": [4, 8]}]}}, "")
    with pytest.raises(BenchError, match="distinct names"):  # the same switch twice: the same row names
        build_report(spec, load_results([sweep_folder]), VIEWS.get, VERSION, cards)
    spec.figure.panels[1].label = "M"
    report = build_report(spec, load_results([sweep_folder]), VIEWS.get, VERSION, cards)
    assert list(sweep_series(report, 0)) == ["CoOp"] and list(sweep_series(report, 1)) == ["CoOp"]
    assert [report.row_labels[r.name] for r in report.rows] == ["CoOp (n_ctx=2)", "CoOp (n_ctx=4)", "CoOp (M=4)",
                                                                "CoOp (M=8)"]
    assert report.same_as == {"coop (M=4)": "coop (n_ctx=4)"}
    assert report.complete() == ["coop (n_ctx=2)", "coop (n_ctx=4)", "coop (M=8)"]
    assert set(report.versus[("smoke", "all")]) == {"coop (n_ctx=4)", "coop (M=8)"}  # each against n_ctx 2, once
    assert any("ranked and tested once: CoOp (M=4) = CoOp (n_ctx=4)" in n for n in report.notes)


def test_curves_and_matrices_refuse_a_mean_of_protocols():
    for kind in ("epochs", "similarity"):
        with pytest.raises(ConfigError, match="reads one protocol per column; 'mean_of: smoke\\*'"):
            spec_of(columns=[{"mean_of": "smoke*"}], rows=["coop"], figure={"kind": kind})
    spec_of(columns=[{"mean_of": "smoke*"}], rows=["coop"], figure={"kind": "bars"})  # a bar of a mean is fine


def test_seed_points_and_bars_are_the_cells_values(sweep_folder):
    report = report_of(sweep_folder, rows=[{"method": "coop", "label": "M2", "set": {"n_ctx": 2}}, "coop"],
                       metrics=["all", "many"], figure={"kind": "seeds"})
    assert seed_points(report)[("smoke", "all")] == {"M2": {1: 53.0, 2: 54.0, 3: 55.0}, "coop": {1: 55.0, 2: 56.0, 3: 57.0}}
    frame = figure_frames(report)["Per-seed values, smoke All"]
    assert list(frame.columns) == ["", "M2", "coop"]
    assert frame.values.tolist() == [["seed 1", "53.00", "55.00"], ["seed 2", "54.00", "56.00"],
                                     ["seed 3", "55.00", "57.00"], ["Mean", "54.00", "56.00"], ["Std", "1.00", "1.00"]]
    bars = bar_values(report, "smoke")
    assert [(m.x, m.mean, m.paper) for m in bars["coop"]] == [("all", 56.0, 79.0), ("many", 60.0, None)]


def test_epoch_curves_come_from_the_records_and_band_over_seeds(sweep_folder):
    report = report_of(sweep_folder, rows=["coop"], figure={"kind": "epochs"})
    curves = epoch_curves(report)[("smoke", "all")]["coop"]
    assert curves == [[11.0, 21.0, 31.0], [12.0, 22.0, 32.0], [13.0, 23.0, 33.0]]
    mean, std = band_over_seeds(curves + [[14.0, 24.0]])  # a shorter curve: up to the shortest
    assert mean == [12.5, 22.5] and std == pytest.approx([statistics_stdev([11, 12, 13, 14])] * 2)
    frame = figure_frames(report)["smoke after each epoch, mean ± std over seeds"]
    assert list(frame.columns) == ["Epoch", "coop (n=3)"]
    assert frame.values.tolist() == [[1, "12.00 ± 1.00"], [2, "22.00 ± 1.00"], [3, "32.00 ± 1.00"]]


def statistics_stdev(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_similarity_is_the_cosine_of_the_stored_features_averaged_over_seeds(sweep_folder):
    report = report_of(sweep_folder, rows=["coop"], figure={"kind": "similarity"})
    (classes, matrix, n), = similarity_matrices(report)["smoke"].values()
    # the features [1,0], [0,2], [s,s]: cos(a, b) = 0 and cos(a, c) = cos(b, c) = 1/sqrt(2) at every seed
    half = 1 / math.sqrt(2)
    assert classes == ["a", "b", "c"] and n == 3
    assert numpy.allclose(matrix, [[1, 0, half], [0, 1, half], [half, half, 1]])
    frames = figure_frames(report)
    stats = frames["Cosine similarity between the text features of 3 classes, off the diagonal (smoke)"]
    off = [0, 0, half, half, half, half]
    assert stats.values.tolist()[0][:6] == ["coop", 3, f"{2 * half / 3:.3f}", f"{statistics_stdev(off):.3f}",
                                            "0.000", f"{half:.3f}"]
    assert frames["coop: cosine similarity of the class text features (smoke)"].values.tolist()[2] == [
        "3 c", "0.71", "0.71", "1.00"]


def test_similarity_reads_the_figures_evaluation_in_every_column(sweep_folder):
    for seed in (1, 2, 3):
        put(sweep_folder, "smoke_b2n", "coop", seed, {"all": 50.0}, text_features={
            "base": {"classes": ["a", "b"], "features": [[1, 0], [0, 1]]},
            "new": {"classes": ["c", "d"], "features": [[1, 0], [1, 0]]}})
    report = report_of(sweep_folder, rows=["coop"], columns=["smoke_b2n", "smoke"],
                       figure={"kind": "similarity", "evaluation": "new"})
    with pytest.raises(BenchError, match="figure.evaluation 'new' is not an evaluation of the protocol "
                                         "\\(its results store: smoke\\)"):
        similarity_matrices(report)
    report = report_of(sweep_folder, rows=["coop"], columns=["smoke_b2n"], figure={"kind": "similarity",
                                                                                   "evaluation": "new"})
    (classes, matrix, n), = similarity_matrices(report)["smoke_b2n"].values()
    assert classes == ["c", "d"] and numpy.allclose(matrix, 1.0) and n == 3
    both = report_of(sweep_folder, rows=["coop"], columns=["smoke_b2n", "smoke"], figure={"kind": "similarity"})
    assert {g: list(rows) for g, rows in similarity_matrices(both).items()} == {"smoke_b2n": ["coop"],
                                                                                "smoke": ["coop"]}
    titles = list(figure_frames(both))  # each column's summary, then its matrices, column by column
    assert [t.split(" (")[-1] for t in titles] == ["smoke_b2n)", "smoke_b2n)", "smoke)", "smoke)"]
    assert titles[0].startswith("Cosine") and titles[2].startswith("Cosine")


def test_labels_take_a_subscript_only_when_they_are_one_symbol_and_its_index():
    from bench.reporting.figure_plots import math_text
    from bench.reporting.plots import band

    assert math_text("λ_TETF") == "$\\mathregular{λ_{TETF}}$"
    for plain in ("samples_per_cluster", "accuracy (%)", "K", "λ_RS weight"):
        assert math_text(plain) == plain
    assert band([99.0, 1.0], [2.0, 2.0]) == ([97.0, 0.0], [100.0, 3.0])  # a percentage stays in [0, 100]
    assert band([99.0, 1.0], [2.0, 2.0], percent=False) == ([97.0, -1.0], [101.0, 3.0])  # seconds need not


def test_effective_rank_of_a_simplex_is_one_less_than_its_classes():
    k = 6
    simplex = numpy.eye(k) - 1 / k  # the ETF's Gram matrix up to scale: rank k - 1, equal singular values
    assert effective_rank(simplex.tolist()) == pytest.approx(k - 1)
    assert effective_rank(numpy.eye(3).tolist()) == pytest.approx(3)
    assert numpy.allclose(cosine_matrix([[3, 0], [1, 1]]), [[1, 1 / math.sqrt(2)], [1 / math.sqrt(2), 1]])


FIGURES = [name for name in __import__("bench.config.catalog", fromlist=["x"]).available_reports()
           if load_spec(name).figure is not None]


def test_the_shipped_figures_are_the_papers():
    assert FIGURES == ["cpt_figure1", "cpt_figure1d", "cpt_figure3", "cpt_figure4", "cpt_figure5", "lamp_figure1",
                       "lamp_figure3", "mdpr_figure3", "mdpr_figure4"]


@pytest.mark.parametrize("name", FIGURES)
def test_every_shipped_figure_draws_at_its_printed_size(name, tmp_path, monkeypatch):
    """Each shipped figure spec on fabricated results of the real protocols: a PDF and a PNG at one
    column's or the text's width, every text at 7 pt or more, all of it on the page, no tick labels on
    top of each other."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    from bench.cli.leaderboard import protocol_view
    from bench.core.registry import all_cards
    from bench.plugins import load_builtins
    from bench.reporting import figure_plots

    load_builtins()
    drawn = []
    real = figure_plots.unclash_ticks
    monkeypatch.setattr(figure_plots, "unclash_ticks", lambda fig: (real(fig), drawn.append(fig)))
    spec, root = load_spec(name), tmp_path / name
    fabricate(root, spec, protocol_view, random.Random(name))
    report = build_report(spec, load_results([root]), protocol_view, VERSION, all_cards())
    pdf, png = figure_plots.write_figure(report, tmp_path / "out")
    fig, width = drawn[0], {"column": 3.3, "text": 6.9}[spec.figure.width]
    assert fig.get_figwidth() == width
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf.read_bytes())
    assert float(box.group(1)) == pytest.approx(width * 72, abs=0.5)  # not cropped or grown
    assert Image.open(png).size[0] == round(width * 300)
    fig.set_dpi(100)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    texts = [t for t in fig.findobj(lambda o: hasattr(o, "get_fontsize") and hasattr(o, "get_text"))
             if t.get_visible() and t.get_text().strip()]
    assert texts and min(t.get_fontsize() for t in texts) >= 7
    drawn_box = fig.get_tightbbox(renderer)  # in inches: what is drawn stays on the page
    assert drawn_box.x0 >= -0.01 and drawn_box.x1 <= width + 0.01
    assert drawn_box.y0 >= -0.01 and drawn_box.y1 <= fig.get_figheight() + 0.01
    for ax in fig.axes:
        assert not figure_plots.overlapping(ax.get_xticklabels()), ax.get_title()


def shipped_report(name, tmp_path):
    from bench.cli.leaderboard import protocol_view
    from bench.core.registry import all_cards
    from bench.plugins import load_builtins

    load_builtins()
    spec = load_spec(name)
    fabricate(tmp_path / name, spec, protocol_view, random.Random(name))
    return build_report(spec, load_results([tmp_path / name]), protocol_view, VERSION, all_cards())


def test_the_figures_show_the_numbers_their_papers_print(tmp_path):
    """The open diamonds, typed from the papers: CPT supp 7.1's peak (73.92 at 16 classes per cluster, no
    other point) and MDPR §4.5's Places-LT Few of the semantic head alone (48.39), beside Table 3's."""
    cpt = shipped_report("cpt_figure5", tmp_path)
    (marks,) = sweep_series(cpt, 0).values()
    assert [(m.x, m.paper) for m in marks] == [(4, None), (8, None), (16, 73.92), (32, None), (64, None)]
    mdpr = shipped_report("mdpr_figure3", tmp_path)
    places = next(g for g in mdpr.protocols if g.startswith("places"))
    assert mdpr.cells[("+ semantic head", places, "few")].reported == 48.39
    assert mdpr.cells[("MaPLe", places, "few")].reported == 28.73
    assert mdpr.cells[("+ regularisers", places, "few")].reported == 50.99


def test_a_figure_is_one_command_to_run_and_one_to_draw(tmp_path, capsys):
    """A sweep on the smoke protocol: `bench run --report` runs exactly its cells (the default setting,
    which two panels share, once), `bench plan` has nothing left, and `bench report --plots` draws it
    and prints the plotted numbers."""
    spec = tmp_path / "fig.yaml"
    spec.write_text(yaml.safe_dump({
        "title": "Context length", "columns": ["smoke"], "metrics": ["all"], "seeds": [1],
        "rows": [{"method": "coop", "label": "CoOp", "set": {"train.epochs": 1}}],
        "figure": {"kind": "sweep", "panels": [{"switch": "n_ctx", "values": [2, 4]},
                                               {"switch": "csc", "values": [False]}]}}))
    results = tmp_path / "results"
    assert main(["run", "--report", str(spec), "--results-dir", str(results), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bench: 2 cells: 2 ran" in out  # n_ctx 4 and csc false are one setting (the default): one cell
    assert len(list(results.rglob("seed-1.json"))) == 2
    assert main(["plan", "--report", str(spec), "--results-dir", str(results)]) == 0
    assert "| all | 1 rows | 2 | 0 | 0 | 0 | 0 |" in capsys.readouterr().out
    code = main(["report", str(spec), "--results-dir", str(results), "--plots", str(tmp_path / "figs")])
    out, err = capsys.readouterr()
    assert code == 0 and sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["fig.pdf", "fig.png"]
    assert "CoOp (n\\_ctx=2)" in out and "CoOp (csc=false)" in out and "wrote 2 figure file(s)" in err


@pytest.mark.parametrize("args, message", [
    (["run"], "give --protocol and --method, or --report SPEC"),
    (["run", "--report", "cpt_figure4", "--protocol", "smoke"], "leave --protocol and --method out"),
    (["run", "--report", "nope"], "unknown report 'nope'"),
    (["run", "--report", "smoke"], "takes every method with results"),
    (["run", "--report", "cpt_figure4", "--set", "maple.depth=2"], "--set names method 'maple'"),
])
def test_bad_report_selections_are_one_error_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and message in err and err.count("\n") == 1


def test_a_reported_only_row_is_left_out_of_the_run_with_a_note(capsys):
    assert main(["plan", "--report", "cpt_b2n_tau0.25", "--results-dir", "/nonexistent/results"]) == 0
    err = capsys.readouterr().err
    assert "row 'coprompt': coprompt is reported only" in err and "row 'maple'" not in err


def test_curves_and_similarity_figures_read_what_real_runs_store(tmp_path, capsys):
    """A column with both opt-in extras on the smoke twin: `bench run --report` runs its cells with them
    (cells of their own), and the epochs and similarity figures draw from those records."""
    base = {"title": "Extras", "metrics": ["all"], "seeds": [1],
            "columns": [{"protocols": "smoke", "set": {"eval.per_epoch": True, "eval.text_features": True}}],
            "rows": [{"method": "zeroshot", "label": "Zero-shot"},
                     {"method": "coop", "label": "CoOp", "set": {"train.epochs": 2}}]}
    results = tmp_path / "results"
    for kind in ("epochs", "similarity"):
        spec = tmp_path / f"{kind}.yaml"
        spec.write_text(yaml.safe_dump({**base, "figure": {"kind": kind}}))
        assert main(["run", "--report", str(spec), "--results-dir", str(results), "--no-progress"]) == 0
        assert main(["report", str(spec), "--results-dir", str(results), "--plots", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert "bench: 2 cells: 2 ran" in out and "bench: 2 cells: 2 done before" in out
    assert "| 2       | " in out  # the table of the curve: epoch 2 of CoOp (zero-shot does not train)
    assert "Cosine similarity between the text features of 10 classes" in out
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "epochs.pdf", "epochs.png", "similarity.pdf", "similarity.png"]
