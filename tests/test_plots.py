"""bench.reporting.plots: the figures' data by hand, and the files they make."""
import json

import pytest

from bench.records.schema import SCHEMA
from bench.reporting.plots import cliques, group_bars, longtail_curve, smoothed, write_plots
from test_report import folder, report_of  # noqa: F401  (the fabricated results and views)


def record(seed, **fields) -> str:
    return json.dumps({"schema": SCHEMA, "key": "k" * 64, "protocol": "smoke", "method": "coop", "seed": seed,
                       "code_version": "0.2.0", "config": {}, "metrics": {"all": 50.0}, **fields})


def test_longtail_curve_sorts_classes_by_count_and_keeps_each_seed(tmp_path):
    paths = []
    for seed, acc in enumerate(([90.0, 50.0, 10.0, None], [70.0, 30.0, 20.0, None])):
        path = tmp_path / f"seed-{seed}.json"
        path.write_text(record(seed, class_train_counts=[100, 500, 5, 0], per_class_accuracy=acc))
        paths.append(str(path))
    # by count: class 1 (500), class 0 (100), class 2 (5); class 3 was never trained on (count 0)
    assert longtail_curve(paths) == ([500, 100, 5], [[50.0, 90.0, 10.0], [30.0, 70.0, 20.0]])
    mean, std = smoothed(longtail_curve(paths)[1], window=1)
    assert mean == [40.0, 80.0, 15.0] and std == pytest.approx([14.1421356, 14.1421356, 7.0710678])
    mean, _ = smoothed([[90.0, 60.0, 30.0, 0.0]], window=3)  # centred: the ends average what they have
    assert mean == [75.0, 60.0, 30.0, 15.0]
    old = tmp_path / "old.json"
    old.write_text(record(0, per_class_accuracy=[1.0]))  # written before counts were recorded
    assert longtail_curve([str(old)]) is None and longtail_curve([]) is None
    torn = tmp_path / "torn.json"
    torn.write_text(record(0)[:40])  # damaged after the report read it
    assert longtail_curve([paths[0], str(torn)]) is None


def test_cliques_join_methods_not_significantly_apart():
    ranks = {"a": 1.0, "b": 1.5, "c": 2.5, "d": 4.0}
    pairwise = {("a", "b"): 0.5, ("a", "c"): 0.2, ("b", "c"): 0.3, ("a", "d"): 0.01, ("b", "d"): 0.02,
                ("c", "d"): 0.4}
    assert cliques(ranks, pairwise, 0.05) == [["a", "b", "c"], ["c", "d"]]
    assert cliques(ranks, {}, 0.05) == [["a", "b", "c", "d"]]  # nothing tested: nothing told apart
    assert cliques(ranks, {pair: 0.0 for pair in pairwise}, 0.05) == []


def test_group_bars_take_many_medium_few(folder):  # noqa: F811
    report = report_of(folder, metrics=["all", "many"], columns=["smoke"])
    assert group_bars(report, "smoke") == {}  # no medium / few columns
    for path in folder.rglob("seed-*.json"):
        record = json.loads(path.read_text())
        record["metrics"].update(medium=60.0, few=40.0 + record["seed"])
        path.write_text(json.dumps(record))
    report = report_of(folder, metrics=["all", "many", "medium", "few"], columns=["smoke"])
    bars = group_bars(report, "smoke")
    assert bars["coop"] == [(86.0, pytest.approx(1.0)), (60.0, 0.0), (42.0, 1.0)]


def test_write_plots_makes_the_files(folder, tmp_path):  # noqa: F811
    for path in folder.rglob("seed-*.json"):
        record = json.loads(path.read_text())
        record.update(class_train_counts=[50, 20, 5], per_class_accuracy=[80.0, 60.0, 40.0])
        record["metrics"].update(medium=60.0, few=40.0)
        path.write_text(json.dumps(record))
    report = report_of(folder, metrics=["all", "many", "medium", "few"])
    said = []
    written = write_plots(report, tmp_path / "figs", fmt="png", log=said.append)
    names = sorted(p.name for p in written)
    assert said == ["no critical-difference diagram: it ranks methods over protocols, and 2 protocol(s) are "
                    "too few (it needs 5)"]
    assert names == ["groups-smoke.png", "groups-smoke_b2n.png",
                     "longtail-smoke.png", "longtail-smoke_b2n.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    pdf = write_plots(report, tmp_path / "pdf", fmt="pdf")
    assert all(p.read_bytes()[:5] == b"%PDF-" for p in pdf)


def test_critical_difference_diagram_draws_ranks_and_cliques(tmp_path):
    from bench.reporting.plots import draw_cd, pyplot

    path = tmp_path / "cd.png"
    draw_cd(pyplot(), {"lamp": 1.4, "maple": 2.1, "coop": 2.5}, [["maple", "coop"]], "Friedman p = 0.01", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_tested_is_one_line_not_a_table_of_dashes_or_one_bar(tmp_path):
    """Five protocols cannot give a Holm-corrected signed-rank test at 0.05: the Friedman line says so,
    no pairwise table of '–' and no critical-difference diagram whose one bar would join every method."""
    from types import SimpleNamespace

    from bench.reporting.companions import companion_frames
    from bench.reporting.stats import friedman

    fr = friedman({"A": [80, 81, 82, 83, 84], "B": [70, 71, 72, 73, 74], "C": [60, 61, 62, 63, 64]})
    said = []
    report = SimpleNamespace(friedman=fr, protocols=list("pqrst"), rows=[], spec=SimpleNamespace(alpha=0.05, digits=2,
                             reference=None), columns=[], versus={}, intervals={}, row_labels={}, groups=[])
    frames = companion_frames(report)
    assert [t for t in frames if t.startswith("Friedman")][0].endswith("(that needs 7 protocols)")
    assert not any(t.startswith("Pairwise") for t in frames)
    from bench.reporting import plots

    assert plots.write_plots(report, tmp_path, log=said.append) == []
    assert said == [f"no critical-difference diagram: {fr.note}"]


def test_figures_for_a_paper_column():
    """Many/Medium/Few boundaries where the counts cross the protocol's thresholds, the std band inside
    [0, 100], ten methods with ten different colour and line-style pairs, text at 7 pt or more."""
    from bench.reporting.plots import FONT, WIDTHS, band, boundaries, style

    assert boundaries([150, 120, 100, 50, 20, 19, 5], many=100, few=20) == [(1.5, "Medium"), (4.5, "Few")]
    assert boundaries([50, 30], many=100, few=20) == []  # all medium: no boundary to mark
    assert band([95.0, 3.0], [10.0, 5.0]) == ([85.0, 0.0], [100.0, 8.0])
    assert len({tuple(style(i).values()) for i in range(10)}) == 10 and FONT >= 7 and WIDTHS["column"] == 3.3
