"""bench report: selection, mean ± std, marks, paper numbers and tests on fabricated result folders
(hand-made protocol views: no model is built), the LaTeX snapshot, and bad specs."""
import hashlib
import json
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
import yaml

from scipy import stats as sps

import bench
from bench.cli import main
from bench.core.coerce import from_dict
from bench.core.errors import ConfigError
from bench.core.registry import METHODS, all_cards
from bench.engine.store import ResultStore
from bench.model.method import MethodCard, Reported
from bench.plugins import load_builtins
from bench.records.schema import SCHEMA
from bench.reporting.figurespec import expanded
from bench.reporting.leaderboard import current_version
from bench.reporting.render import escape_markdown, render, render_files
from bench.reporting.report import MEAN, build_report, expand_columns
from bench.reporting.reportspec import ReportSpec, RowSpec, load_spec
from bench.reporting.results import load_results
from bench.reporting.stats import against, paired

SNAPSHOT = Path(__file__).parent / "snapshots" / "report.tex"
VERSION = bench.__version__
VIEWS = {  # protocols that exist in bench/protocols/, described by hand
    name: {"name": name, "description": "", "identity": {"dataset": name}, "seeds": [1, 2, 3],
           "references": {"coop": {"": {"n_ctx": 4}, "train": {"lr": 0.002}},
                          "maple": {"": {"depth": 2}, "train": {"lr": 0.0035}},
                          "zeroshot": {"": {"templates": ["a photo of a {}."]}, "train": {}}}}
    for name in ("smoke", "smoke_b2n", "smoke_b2n_fs", "smoke_xd_dg")}
ALL = {  # (protocol, method) -> "all" per seed 1, 2, 3
    ("smoke", "coop"): [80.0, 82.0, 81.0], ("smoke_b2n", "coop"): [70.0, 71.0, 72.0],
    ("smoke", "maple"): [75.0, 74.0, 76.0], ("smoke_b2n", "maple"): [73.0, 72.0, 74.0],
    ("smoke", "zeroshot"): [70.0, 70.0, 70.0], ("smoke_b2n", "zeroshot"): [60.0, 60.0, 60.0],
}
CARDS = {"coop": MethodCard("p", "c", reported={"smoke": Reported("Table 1", {"all": 79.0})}),
         "maple": MethodCard("p", "c"), "zeroshot": MethodCard("p", "c")}


def put(root, protocol, method, seed, metrics, settings=None, **fields):
    reference = VIEWS[protocol]["references"][method]
    config = {"protocol": VIEWS[protocol]["identity"], "method": {**reference[""], **(settings or {})},
              "train": reference["train"]}
    key = hashlib.sha256(json.dumps([method, config], sort_keys=True).encode()).hexdigest()
    rec = {"schema": SCHEMA, "key": key, "protocol": protocol, "method": method, "seed": seed,
           "code_version": VERSION, "config": config, "metrics": metrics, **fields}
    path = ResultStore(root).result_path(protocol, method, key, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


@pytest.fixture
def folder(tmp_path):
    for (protocol, method), values in ALL.items():
        for seed, value in zip((1, 2, 3), values):
            put(tmp_path, protocol, method, seed, {"all": value, "many": value + 5})
    return tmp_path


def report_of(folder, **spec):
    fields = {"title": "T", "columns": ["smoke", "smoke_b2n"], "rows": ["coop", "maple", "zeroshot"],
              "reference": "zeroshot", **spec}
    from bench.core.coerce import from_dict

    return build_report(from_dict(ReportSpec, fields, ""), load_results([folder]), VIEWS.get, VERSION, CARDS)


def test_cells_are_mean_and_sample_std_over_seeds(folder):
    report = report_of(folder)
    cell = report.cells[("coop", "smoke", "all")]
    assert cell.values == {1: 80.0, 2: 82.0, 3: 81.0}
    assert cell.mean == 81.0 and cell.std == pytest.approx(1.0)  # sample std (n - 1)
    assert cell.reported == 79.0 and cell.gap == pytest.approx(2.0)
    mean = report.cells[("coop", MEAN, "all")]  # per seed, the average over the two protocols
    assert mean.values == {1: 75.0, 2: 76.5, 3: 76.5}
    assert report.cells[("maple", "smoke", "all")].reported is None


def test_best_is_bold_second_underlined_and_ties_share(folder):
    report = report_of(folder)
    assert report.best[("smoke", "all")] == {"coop": "bold", "maple": "underline"}
    assert report.best[("smoke_b2n", "all")] == {"maple": "bold", "coop": "underline"}  # 73 vs 71
    put(folder, "smoke", "zeroshot", 1, {"all": 80.0, "many": 85.0})  # now 80, 82, 81 like coop?
    for seed, value in ((1, 80.0), (2, 82.0), (3, 81.0)):
        put(folder, "smoke", "zeroshot", seed, {"all": value, "many": value + 5})
    tied = report_of(folder).best[("smoke", "all")]
    assert tied == {"coop": "bold", "zeroshot": "bold", "maple": "underline"}


def test_daggers_follow_holm_corrected_paired_tests_against_the_best(folder):
    report = report_of(folder)
    cells = {r: report.cells[(r, "smoke_b2n", "all")].values for r in ("coop", "maple", "zeroshot")}
    raw = [paired(cells[r], cells["maple"]).p for r in ("coop", "zeroshot")]
    holm = sorted(raw)
    adjusted = {r: max(min(1, 2 * holm[0]), min(1, p)) if p == holm[1] else min(1, 2 * p)
                for r, p in zip(("coop", "zeroshot"), raw)}
    for row in ("coop", "zeroshot"):
        assert ((row, "smoke_b2n", "all") in report.daggers) == (adjusted[row] >= 0.05)
    assert ("maple", "smoke_b2n", "all") not in report.daggers  # the best itself


def test_tests_against_the_reference_match_bench_stats(folder):
    report = report_of(folder)
    values = {r: report.cells[(r, "smoke", "all")].values for r in ("coop", "maple", "zeroshot")}
    assert report.versus[("smoke", "all")] == against(values, "zeroshot")
    assert report.friedman is not None and report.friedman.p is None  # 2 protocols: too few, said so
    assert "too few" in report.friedman.note


def test_tests_against_the_reference_are_scipys_with_holm(folder):
    report = report_of(folder)
    values = {r: [report.cells[(r, "smoke", "all")].values[s] for s in (1, 2, 3)] for r in ("coop", "maple", "zeroshot")}
    raw = {r: sps.ttest_rel(values[r], values["zeroshot"]).pvalue for r in ("coop", "maple")}
    low, high = sorted(raw, key=raw.get)
    holm_by_hand = {low: 2 * raw[low], high: max(2 * raw[low], raw[high])}
    for row in ("coop", "maple"):
        comparison, adjusted = report.versus[("smoke", "all")][row]
        assert comparison.test == "paired t" and comparison.p == pytest.approx(raw[row])
        assert adjusted == pytest.approx(holm_by_hand[row])


def six_or_seven_seeds(root, seeds):
    for protocol in ("smoke", "smoke_b2n"):
        for seed in seeds:
            for method, value in (("coop", 80.0), ("maple", 79.0), ("zeroshot", 70.0)):
                put(root, protocol, method, seed, {"all": value + seed % 3 + (seed * 7 % 5) / 10})


@pytest.mark.parametrize("seeds, test", [(range(1, 7), "paired t"), (range(1, 8), "Wilcoxon signed-rank")])
def test_a_row_far_below_the_best_has_no_dagger_at_six_or_seven_seeds(tmp_path, seeds, test):
    six_or_seven_seeds(tmp_path, seeds)
    report = report_of(tmp_path, seeds=list(seeds))
    assert report.versus[("smoke", "all")]["coop"][0].test == test  # 2 tests per column: Wilcoxon from 7
    assert ("zeroshot", "smoke", "all") not in report.daggers  # 10 points below coop on every seed
    assert report.versus[("smoke", "all")]["coop"][1] < 0.05


def test_cells_take_only_the_reports_seeds(folder):
    for seed in (4, 5):
        put(folder, "smoke", "coop", seed, {"all": 10.0, "many": 10.0})
    assert report_of(folder).cells[("coop", "smoke", "all")].values == {1: 80.0, 2: 82.0, 3: 81.0}
    two = report_of(folder, seeds=[1, 2])
    assert two.cells[("coop", "smoke", "all")].values == {1: 80.0, 2: 82.0}
    assert "over 2 seeds (1, 2)" in render(two, "md")


def test_markdown_labels_cannot_break_the_table(folder):
    text = render(report_of(folder, title="A | B", rows=["coop", {"method": "maple", "label": "maple | *v2*_x"},
                                                          "zeroshot"]), "md")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = lines[start:lines.index("", start)]  # the main table
    assert len(table) == 6  # header, rule, three methods, coop's paper row
    assert len({line.replace("\\|", "").count("|") for line in table}) == 1
    assert "maple \\| \\*v2\\*\\_x" in text and text.startswith("## A \\| B")


def test_set_values_yaml_reads_as_text_are_numbers(folder, tmp_path, capsys):
    report = report_of(folder, columns=["smoke"], rows=[{"method": "coop", "set": {"train.lr": "2e-3"}}],
                       reference=None)
    assert report.cells[("coop (train.lr=0.002)", "smoke", "all")].values == {1: 80.0, 2: 82.0, 3: 81.0}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"title": "T", "columns": ["smoke"],
                                    "rows": [{"method": "coop", "set": {"train.lr": "fast"}}]}))
    assert main(["report", str(path), "--results-dir", str(folder)]) == 2
    assert "train.lr takes a number, got 'fast'" in capsys.readouterr().err


def test_rows_all_without_current_results_is_an_error(tmp_path, capsys):
    put(tmp_path, "smoke", "coop", 1, {"all": 50.0}, settings={"n_ctx": 16})  # not the current recipe
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"title": "T", "columns": ["smoke"], "rows": "all"}))
    code = main(["report", str(path), "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no method has results of the current configuration" in err


def test_incomplete_rows_are_shown_but_not_ranked(folder):
    for path in folder.rglob("seed-3.json"):
        if "/maple/" in str(path) and "smoke_b2n" in str(path):
            path.unlink()
    report = report_of(folder)
    assert report.incomplete == {"maple": ["smoke_b2n All: seed 3"]}
    assert report.best[("smoke_b2n", "all")] == {"coop": "bold", "zeroshot": "underline"}
    assert "maple" not in report.versus[("smoke", "all")]
    text = render(report, "md")
    assert "| maple \\*" in text and "\\* maple: lacks smoke\\_b2n All: seed 3" in text


def test_a_row_with_settings_takes_only_those_results(folder):
    for seed, value in zip((1, 2, 3), (90.0, 91.0, 92.0)):
        put(folder, "smoke", "coop", seed, {"all": value, "many": value}, settings={"n_ctx": 8})
    report = report_of(folder, columns=["smoke"], rows=["coop", {"method": "coop", "set": {"n_ctx": 8}}],
                       reference=None)
    assert report.cells[("coop", "smoke", "all")].mean == 81.0
    assert report.cells[("coop (n_ctx=8)", "smoke", "all")].mean == 91.0
    assert report.cells[("coop (n_ctx=8)", "smoke", "all")].reported is None  # the card is the default recipe


def test_markdown_shows_marks_paper_rows_and_caption(folder):
    text = render(report_of(folder), "md")
    assert "**81.00 ± 1.00**" in text and "<ins>75.00 ± 1.00" in text
    assert "| coop (paper)" in text and "| 79.00" in text and "+2.00" not in text  # a paper block, no gap row
    assert text.index("| coop (paper)") > text.index("| zeroshot")  # under all of ours
    assert "over 3 seeds (1, 2, 3)" in text and "Holm" in text and "α = 0.05" in text
    assert "### Paired tests against zeroshot" in text


def test_latex_matches_the_snapshot(folder):
    tex = render(report_of(folder), "latex")
    if not SNAPSHOT.exists():  # pragma: no cover
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(tex)
        pytest.fail(f"wrote {SNAPSHOT}: review it and commit it")
    assert tex == SNAPSHOT.read_text()
    assert "\\toprule" in tex and "\\benchbold{81.}{00} $\\pm$ 1.00" in tex and "\\multirow" in tex
    assert "60.00 $\\pm$ 0.00\\phantom{$^\\dagger$}" in tex  # aligned beside the column's dagger
    assert "79.00\\phantom{ $\\pm$ 0.00}" in tex  # the paper's number too


def latex_problems(tex: str) -> list:
    """What would stop pdflatex, checked without TeX: unbalanced braces, a special character outside
    math and escapes, and tabular rows whose cells (\\multicolumn counted) do not fill the column format."""
    body = re.sub(r"\\[{}%&$#_]", "", "\n".join(line for line in tex.splitlines()
                                              if not line.startswith(("%", "\\providecommand"))))
    problems, depth = [], 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            problems.append("a '}' closes nothing")
    problems += ["unbalanced braces"] if depth else []
    text = re.sub(r"\$[^$]*\$", "", body)
    problems += [f"bare {ch!r} in ...{text[text.index(ch) - 30:text.index(ch) + 10]!r}" for ch in "_^#%<>"
                 if ch in text]  # < and > print as ¡ and ¿ in the default OT1 encoding
    for fmt, content in re.findall(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", body, re.S):
        columns = len(re.findall(r"[lrc]", fmt))
        for row in content.split("\\\\"):
            row = re.sub(r"\\(toprule|midrule|bottomrule|cmidrule\(lr\)\{\d+-\d+\})", "", row).strip()
            width = sum(int(m.group(1)) if (m := re.match(r"\s*\\multicolumn\{(\d+)\}", cell)) else 1
                        for cell in row.split("&"))
            if row and width != columns:
                problems.append(f"{width} cells for {columns} columns: {row[:60]!r}")
    return problems


def test_the_latex_check_finds_what_stops_pdflatex():
    good = "\\begin{tabular}{lr}\n\\toprule\na & \\textbf{1 $\\pm$ 2} \\\\\n\\multicolumn{2}{c}{x\\_y} \\\\\n\\end{tabular}"
    assert latex_problems(good) == []
    assert latex_problems("\\caption{b2n_cpt/*/tau0.25}")[0].startswith("bare '_'")
    assert latex_problems("\\textbf{1") == ["unbalanced braces"]
    assert latex_problems(good.replace("a & ", "a & b & "))[0].startswith("3 cells for 2 columns")


@pytest.mark.parametrize("spec", [
    {}, {"metrics": ["all", "many"]}, {"title": "50% of R&D #1: x_y ~ {z} ^ \\ $"},
    {"rows": ["coop", {"method": "maple", "label": "maple_b2n & <50%>"}, "zeroshot"]},
    {"columns": [{"mean_of": "smoke*", "metrics": ["all"], "label": "Avg_3 %"}, {"protocols": "smoke_b2n"}]},
])
def test_latex_of_every_layout_is_well_formed(folder, spec):
    tex = render(report_of(folder, **spec), "latex")
    assert latex_problems(tex) == []


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs a TeX engine (pdflatex; .ci/run installs it)")
def test_latex_compiles_and_fit_keeps_it_inside_the_line(folder, tmp_path):
    report = report_of(folder, metrics=["all", "many"], paper_rows="inline", font="normalsize")  # 6 wide columns
    wide = compile_problems(render(report, "latex", standalone=True), tmp_path / "wide.tex")
    assert len(wide) == 1 and float(wide[0]) > 0  # the check sees a table wider than the line
    assert compile_problems(render(report, "latex", fit="textwidth", standalone=True), tmp_path / "fit.tex") == []
    sideways = render(report, "latex", fit="landscape", standalone=True)
    assert "\\begin{sidewaystable}" in sideways and compile_problems(sideways, tmp_path / "side.tex") == []


FONT_PT = {"normalsize": 10, "small": 9, "footnotesize": 8, "scriptsize": 7}  # the sizes of a 10 pt article
# A two-column page of a CVPR-sized paper: text 6.875 in (497 pt), columns 3.28 in (237 pt).
PAGE = r"""\documentclass[twocolumn]{article}
\usepackage[textwidth=6.875in,columnsep=0.3125in]{geometry}
\usepackage{booktabs}
\usepackage{multirow}
\newsavebox{\measured}
\begin{document}
%s
\end{document}
"""


def printed_sizes(tex: str, path: Path):
    """The size each tabular's numbers print at (pt) when ``tex`` is pasted as it is into a two-column
    paper: its float's font, scaled down by as much as the tabular is wider than what the float spans
    (a column, or the page with table*); and pdflatex's complaints (an overfull line, a float taller
    than the page)."""
    floats = re.findall(r"\\begin\{(table\*?)\}(.*?)\\end\{\1\}", tex, flags=re.S)
    fonts = [next((FONT_PT[f] for f in re.findall(r"\\(" + "|".join(FONT_PT) + r")\b", body)), 10)
             for _, body in floats]
    for i in range(len(floats)):  # each tabular in a box whose width the log reports
        tex = tex.replace("\\begin{tabular}", "\\begin{lrbox}{\\measured}\\begin{TABULAR}", 1)
        tex = tex.replace("\\end{tabular}", "\\end{TABULAR}\\end{lrbox}\\typeout{MEASURED:\\the\\wd\\measured:"
                          "\\the\\columnwidth:\\the\\textwidth}\\usebox{\\measured}", 1)
    problems = compile_problems(PAGE % tex.replace("{TABULAR}", "{tabular}"), path)
    found = re.findall(r"MEASURED:([\d.]+)pt:([\d.]+)pt:([\d.]+)pt", path.with_suffix(".log").read_text(errors="replace"))
    assert len(found) == len(floats), path
    return [round(font * min(1.0, float(text if env == "table*" else column) / float(width)), 1)
            for (env, _), font, (width, column, text) in zip(floats, fonts, found)], problems


def compile_problems(tex: str, path: Path) -> list:
    """pdflatex's complaints about a standalone document: a failed run, or (from its log) a table wider
    than the line or a float taller than the page."""
    path.write_text(tex)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", path.name], cwd=path.parent,
                          capture_output=True, timeout=120)
    if done.returncode != 0:
        return [done.stdout.decode(errors="replace")[-1500:]]
    log = path.with_suffix(".log").read_text(errors="replace")
    return re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log) + re.findall(r"Float too large.*", log)


def test_html_escapes_labels(folder):
    html = render(report_of(folder, rows=["coop", {"method": "maple", "label": "maple <&>"}, "zeroshot"]), "html")
    assert "maple &lt;&amp;&gt;" in html and "font-weight: bold" in html and "text-decoration: underline" in html
    html = render(report_of(folder, title="CIFAR <i>LT</i>"), "html")
    assert "<i>" not in html and html.count("CIFAR &lt;i&gt;LT&lt;/i&gt;") == 2  # the page title and heading, once each


@pytest.mark.parametrize("spec, message", [
    ({"rows": ["coop", "nonesuch"]}, "unknown method 'nonesuch'"),
    ({"metrics": ["all", "top5"]}, "metric 'top5' does not exist in the results of 'smoke'"),
    ({"rows": ["coop", {"method": "coop", "set": {"nctx": 2}}]}, "coop has no option 'nctx'"),
    ({"reference": "maple_la"}, "reference 'maple_la' is not one of the report's rows"),
    ({"rows": ["coop", "coop"]}, "distinct names"),
    ({"extra_rows": ["coop"]}, "distinct names"),
    ({"rows": "all", "extra_rows": ["coop"]}, "'rows: all' already takes every method"),
    ({"columns": ["smok"]}, "unknown protocol 'smok'"),
    ({"test": "z"}, "test: expected one of"),
    ({"columns": ["smoke_xd_dg"]}, "no results of smoke_xd_dg at code version"),
    ({"columns": [{"protocols": "smoke", "mean_of": "smoke*"}]}, "give a column either 'protocols' or 'mean_of'"),
    ({"columns": [{"mean_of": "smoke", "label": "smoke"}]}, "a mean_of label must not be a protocol's name"),
    ({"columns": [{"protocols": "smoke*", "label": "S"}]}, "a label heads one protocol"),
    ({"columns": [{"mean_of": "smoke", "metric": ["all"]}]}, "metric"),
])
def test_bad_specs_are_one_error_line(folder, tmp_path, capsys, spec, message):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"title": "T", "columns": ["smoke"], "rows": ["coop", "zeroshot"], **spec}))
    code = main(["report", str(path), "--results-dir", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("bench: error: ") and err.count("\n") == 1 and message in err, err


def test_bad_inputs_around_the_spec(folder, tmp_path, capsys):
    cases = [(["report", "leaderbord"], "did you mean 'leaderboard'"),
             (["report", str(tmp_path / "no.yaml")], "does not exist"),
             (["report", "smoke", "--results-dir", str(tmp_path / "empty")], "does not exist")]
    (tmp_path / "bad.yaml").write_text("title: [unclosed")
    cases.append((["report", str(tmp_path / "bad.yaml")], "malformed YAML"))
    (tmp_path / "empty").mkdir()
    cases[2] = (cases[2][0], "holds no readable results")
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("bench: error: ") and err.count("\n") == 1 and message in err, err


def test_shipped_specs_load():
    from bench.config.catalog import available_reports

    names = available_reports()
    assert "leaderboard" in names and "smoke" in names
    load_builtins()
    for name in names:
        spec = expanded(load_spec(name))[0]  # a sweep's rows: each series at each value
        assert spec.title and expand_columns(spec), name
        assert spec.rows == "all" or all(isinstance(r, RowSpec) and r.method in all_cards() for r in spec.rows), name
        assert spec.rows == "all" or spec.reference in [r.name for r in spec.rows if r.method in METHODS], name


def test_std_convention_is_stated_and_matches_statistics(folder):
    report = report_of(folder)
    values = list(report.cells[("maple", "smoke", "all")].values.values())
    assert report.cells[("maple", "smoke", "all")].std == statistics.stdev(values)


def test_rows_all_are_methods_with_current_results_best_first(folder):
    for path in folder.rglob("seed-*.json"):
        if "/zeroshot/" in str(path):
            path.unlink()
    for seed in (1, 2, 3):  # zeroshot only with another template: not the current configuration
        put(folder, "smoke", "zeroshot", seed, {"all": 99.0}, settings={"templates": ["a {}."]})
    report = report_of(folder, rows="all", reference=None)
    assert [r.name for r in report.rows] == ["coop", "maple"]  # mean over protocols: 76.0 vs 74.0


def test_ablation_rows_take_the_paper_numbers_of_their_settings():
    from bench.model.method import Ablation
    from bench.reporting.report import reported_value

    card = MethodCard("p", "c", ablations=[Ablation("T7", "smoke", {"beta": 0.0}, {"hm": 71.95}),
                                           Ablation("T7", "smoke", {"beta": 2.0}, {"hm": 72.96}),
                                           Ablation("T6", "smoke", {}, {"hm": 70.0})])
    view = {"references": {"lamp": {"": {"beta": 2.0, "use_lbo": True}, "train": {"lr": 0.003}}}}

    def value(table, settings):
        return reported_value(RowSpec("lamp", set=settings, reported_from=table), "smoke", "hm", card, True, view)

    assert value("T7", {"beta": 0}) == 71.95 and value("T7", {"beta": 2}) == 72.96
    assert value("T7", {}) == 72.96  # the default beta is 2
    assert value("T6", {"beta": 2.0}) == 70.0 and value("T6", {"use_lbo": False}) is None
    assert value("T7", {"beta": 1.0}) is None


def test_shipped_ablation_specs_find_a_paper_number_for_every_cell():
    from bench.config.catalog import available_reports
    from bench.cli.leaderboard import protocol_view
    from bench.reporting.report import reported_value

    load_builtins()
    specs = {name: spec for name, spec in zip(available_reports(), map(load_spec, available_reports()))
             if spec.rows != "all" and any(r.reported_from for r in spec.rows) and spec.figure is None}
    # (a figure's paper numbers are the few its text quotes: tests/test_figures.py)
    assert set(specs) == {"mdpr_table5", "mdpr_table6", "lamp_table5", "lamp_table6",
                          "lamp_table7_beta", "lamp_table11_pool", "cpt_table1", "cpt_table5", "lamp_b2n_balanced",
                          "mdpr_table7"}
    missing = []
    for name, spec in specs.items():
        for group in expand_columns(spec):
            view = protocol_view(group.members[0])
            for row in spec.rows:
                card = all_cards()[row.method]
                missing += [(name, row.name, group.name, m) for m in group.metrics or spec.metrics
                            if reported_value(row, group.pattern or group.name, m, card, True, view) is None]
    assert missing == [  # the paper prints none
        ("mdpr_table6", method, "imagenet_lt", "train_img_s") for method in ("coop", "mdpr_coop", "maple", "mdpr_maple")]


def test_latex_rules_each_protocol_group(folder):
    tex = render(report_of(folder, metrics=["all", "many"]), "latex")
    lines = tex.splitlines()
    header = next(i for i, line in enumerate(lines) if "\\multicolumn{2}{c}{smoke}" in line)
    # columns: method, ours/paper, then two per protocol and two for the mean (no n: every row has 3 seeds)
    assert lines[header + 1] == "\\cmidrule(lr){3-4} \\cmidrule(lr){5-6} \\cmidrule(lr){7-8}"
    assert lines[header + 2].split("&")[2].strip() == "All"


def test_mean_of_columns_average_their_protocols_seed_by_seed(folder):
    xd = {"coop": [50.0, 51.0, 55.0], "maple": [52.0, 52.0, 52.0], "zeroshot": [40.0, 41.0]}  # zeroshot lacks seed 3
    for method, values in xd.items():
        for seed, value in zip((1, 2, 3), values):
            for protocol in ("smoke_xd_dg", "smoke_b2n_fs"):  # the same numbers on both
                put(folder, protocol, method, seed, {"all": value, "many": value})
    cards = {**CARDS, "maple": MethodCard("p", "c", reported={"smoke*": Reported("Table 9 Avg", {"all": 66.6})})}
    spec = from_dict(ReportSpec, {"title": "T", "rows": ["coop", "maple", "zeroshot"], "reference": "maple",
                                  "columns": [{"mean_of": "smoke*", "metrics": ["all"], "label": "Avg"},
                                              {"protocols": "smoke", "metrics": ["many"]}]}, "")
    report = build_report(spec, load_results([folder]), VIEWS.get, VERSION, cards)
    assert report.columns == [("Avg", "all"), ("smoke", "many")]  # no Mean of a mean and a protocol
    assert report.cells[("coop", "Avg", "all")].values == {1: (80 + 70 + 50 + 50) / 4, 2: (82 + 71 + 51 + 51) / 4,
                                                           3: (81 + 72 + 55 + 55) / 4}
    assert report.cells[("maple", "Avg", "all")].reported == 66.6  # the paper's own Avg, filed under the glob
    assert report.cells[("coop", "Avg", "all")].reported is None  # coop's paper has smoke only
    assert report.incomplete == {"zeroshot": ["smoke_b2n_fs All: seed 3", "smoke_xd_dg All: seed 3"]}
    assert report.best[("Avg", "all")] == {"coop": "bold", "maple": "underline"}
    text = render(report, "md")
    assert "| Avg" in text and "Avg: per seed, the mean over its 4 protocols." in text


def fabricate(root, spec, view_of, rng) -> int:
    """Results for every row of ``spec`` on every protocol it reads, each seed of the protocol, with
    every metric it asks for; returns how many were written."""
    written, store = 0, ResultStore(root)
    for group in expand_columns(spec):
        metrics = set(group.metrics or spec.metrics or ["all", "hm"]) | {"all"}
        for member in group.members:
            view = view_of(*group.sources[member])  # a protocol, with the column's overrides
            protocol = view["name"]
            methods = list(dict.fromkeys([spec.reference or "zeroshot", *sorted(view["references"])[:2]]))
            rows = expanded(spec)[0].rows if spec.rows != "all" else [RowSpec(m) for m in methods]
            for row in [r for r in rows if r.method in view["references"]]:  # a reported-only row has none
                reference = view["references"][row.method]
                trained = {k[len("train."):]: v for k, v in row.set.items() if k.startswith("train.")}
                config = {"protocol": view["identity"],
                          "method": {**reference[""], **{k: v for k, v in row.set.items() if not k.startswith("train.")}},
                          "train": {**reference["train"], **trained}}
                key = hashlib.sha256(json.dumps([row.method, row.set, member]).encode()).hexdigest()
                for seed in spec.seeds or view["seeds"]:  # the spec's seeds, where it names them
                    path = store.result_path(protocol, row.method, key, seed)
                    earlier = json.loads(path.read_text())["metrics"] if path.exists() else {}  # another group's
                    rec = {"schema": SCHEMA, "key": key, "protocol": protocol, "method": row.method, "seed": seed,
                           "code_version": current_version(row.method, VERSION, view.get("code_versions")),
                           "config": config,
                           "metrics": {**earlier, **{m: round(rng.uniform(20, 90), 2) for m in metrics}},
                           **figure_fields(spec, metrics, rng)}
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(rec))
                    written += 1
    return written


def figure_fields(spec, metrics, rng) -> dict:
    """What a figure of curves over epochs or similarity matrices reads from a record (3 epochs; 4
    classes of 3-d features), for the specs that draw one."""
    kind = spec.figure.kind if spec.figure else None
    if kind == "epochs":
        return {"epoch_metrics": [{"epoch": e, "metrics": {m: round(rng.uniform(20, 90), 2) for m in metrics}}
                                  for e in (1, 2, 3)]}
    if kind == "similarity":
        features = [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(4)]
        return {"text_features": {name: {"classes": ["a", "b", "c", "d"], "features": features}
                                  for name in ("base", "new")}}
    return {}


@pytest.mark.slow  # every shipped spec
def test_every_shipped_spec_renders_well_formed_tables(tmp_path):
    """Each shipped spec on fabricated results of the real protocol views: every row complete and
    ranked, the paper's numbers found, and LaTeX that pdflatex would accept."""
    import random

    from bench.config.catalog import available_reports
    from bench.cli.leaderboard import protocol_view

    load_builtins()
    cards = all_cards()
    sizes = {}
    for name in available_reports():
        spec, root = load_spec(name), tmp_path / name
        assert fabricate(root, spec, protocol_view, random.Random(name)) > 0, name
        report = build_report(spec, load_results([root]), protocol_view, VERSION, cards)
        assert not report.incomplete and all(report.best.values()), name
        # a figure has the paper's numbers where its text quotes some (a similarity matrix or a sweep: none)
        assert any(c.reported is not None for c in report.cells.values()) or name == "smoke" or spec.figure, name
        assert latex_problems(render(report, "latex")) == [], name
        md = render_files(report, "md", split=True)[""]
        assert md.startswith(f"## {escape_markdown(report.title)}") and "{" not in report.title, name
        notes = md.split("\n\n", 3)[3]  # the caption and notes under the table, for readers of the paper
        assert not re.search(r"spec A\d|§|methods_spec|over 1 tests|\\\*|xd\\_mean|dg\\_mean|with\\_source|"
                             r"macro\\_f1|global\\_etf", notes), (name, notes)
        if shutil.which("pdflatex"):  # .ci/run installs TeX where apt is available
            tables = render_files(report, "latex", split=True)  # the main table and its companions, one page
            size, problems = printed_sizes("\n".join(tables.values()), tmp_path / f"{name}-page.tex")
            sizes[name] = size
            assert min(size) >= 7 and problems == [], (name, size, problems)
    print("printed size of the numbers (pt), main table first:", sizes)


def test_a_metric_empty_by_construction_renders_as_the_papers_print_it(tmp_path, bench_cache, capsys, monkeypatch):
    """CIFAR-100-LT IR10 has no few-shot class, so real records write ``few: null``: the report leaves the
    column out with a note, as MDPR Table 2 prints IR10 without Few (and ranks the rows on what they have),
    instead of failing or printing a column of dashes.  Real `bench run` cells on the smoke twin with no
    class below the few-shot threshold."""
    import bench.config.catalog as catalog

    shipped = catalog.protocols_dir()
    smoke = yaml.safe_load((shipped / "smoke.yaml").read_text())
    smoke.update(name="smoke_nofew", eval={"many_threshold": 100, "few_threshold": 1})
    shutil.copytree(shipped, tmp_path / "protocols")
    (tmp_path / "protocols" / "smoke_nofew.yaml").write_text(yaml.safe_dump(smoke))
    monkeypatch.setattr(catalog, "protocols_dir", lambda: tmp_path / "protocols")
    results = str(tmp_path / "results")
    assert main(["run", "--protocol", "smoke_nofew", "--method", "zeroshot", "la_posthoc", "--seeds", "1", "2",
                 "--results-dir", results]) == 0
    record = json.loads(next(Path(results).rglob("seed-1.json")).read_text())
    assert record["metrics"]["few"] is None and record["group_sizes"]["few"] == 0
    spec = tmp_path / "nofew.yaml"
    spec.write_text(yaml.safe_dump({"title": "No few-shot class", "columns": ["smoke_nofew"], "seeds": [1, 2],
                                    "metrics": ["all", "many", "medium", "few"], "rows": "all"}))
    capsys.readouterr()
    assert main(["report", str(spec), "--results-dir", results]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| Zero-shot CLIP", "| Zero-shot + post-hoc LA"))
            and " ± " in line]  # the cards' labels
    assert len(rows) == 2 and all(row.count("|") == 5 for row in rows) and "over 2 seeds (1, 2)" in out
    assert "Few: left out, no result has a number" in out and "| Few" not in out
    assert any("**" in row for row in rows) and "incomplete" not in out  # ranked: the best All is bold
    assert main(["report", str(spec), "--results-dir", results, "--format", "latex"]) == 0
    assert "Few: left out" in capsys.readouterr().out
    spec.write_text(spec.read_text().replace("- few", "- fwe"))  # a metric no result names is still an error
    code = main(["report", str(spec), "--results-dir", results])
    assert code == 2 and "metric 'fwe' does not exist" in capsys.readouterr().err


def test_cost_columns_come_from_the_records_and_the_fewest_seconds_is_best(tmp_path):
    """MDPR Table 6 / LAMP Table 5 columns: parameters, seconds and images/s from each record's
    timing and usage fields; for seconds and parameters the lowest mean is bold."""
    costs = {"coop": (8192, [10.0, 12.0], 2000), "maple": (3_555_072, [20.0, 22.0], 1000)}
    for method, (params, epochs, rate) in costs.items():
        for seed in (1, 2, 3):
            put(tmp_path, "smoke", method, seed, {"all": 70.0 + seed}, num_test=500,
                train={"epoch_seconds": epochs, "images_per_second": 100.0 / epochs[0]},
                usage={"trainable_parameters": params, "eval_images_per_second": rate})
    report = report_of(tmp_path, columns=["smoke"], rows=["coop", "maple"], reference="coop",
                       metrics=["params_m", "epoch_s", "eval_s", "train_img_s"])
    cell = {(row, m): report.cells[(row, "smoke", m)].mean for row in ("coop", "maple")
            for m in ("params_m", "epoch_s", "eval_s", "train_img_s")}
    assert cell[("coop", "params_m")] == pytest.approx(0.008192) and cell[("maple", "epoch_s")] == 21.0
    assert cell[("coop", "eval_s")] == 0.25 and cell[("maple", "train_img_s")] == 5.0
    assert report.best[("smoke", "epoch_s")]["coop"] == "bold" and report.best[("smoke", "params_m")]["coop"] == "bold"
    assert report.best[("smoke", "train_img_s")]["coop"] == "bold"  # images/s: the most is best
    assert "Params (M)" in render(report, "md") and "s/epoch" in render(report, "md")
    row = next(line for line in render(report, "md").splitlines() if line.startswith("| maple"))
    params, epoch, evaluation, images = [re.sub(r"\*\*|</?ins>", "", c).strip() for c in row.split("|")[2:6]]
    assert (params, epoch, evaluation, images) == ("3.555", "21.0 ± 0.0", "0.5 ± 0.0", "5 ± 0")  # digits per cost
    assert ("smoke", "params_m") not in report.versus and not any(d[-1] == "params_m" for d in report.daggers)


def test_card_notes_on_shown_paper_numbers_become_table_notes(folder):
    cards = {**CARDS, "coop": MethodCard("p", "c", reported={
        "smoke": Reported("Table 1", {"all": 79.0}, note="the paper keeps the best test epoch")})}
    spec = from_dict(ReportSpec, {"title": "T", "columns": ["smoke", "smoke_b2n"], "rows": ["coop", "maple"]}, "")
    report = build_report(spec, load_results([folder]), VIEWS.get, VERSION, cards)
    assert report.paper_notes == ["Table 1: the paper keeps the best test epoch"]  # every row with paper numbers
    md = render(report, "md")
    assert "Paper numbers: Table 1: the paper keeps the best test epoch." in md
    cards["maple"] = MethodCard("p", "c", reported={"smoke": Reported("Table 1", {"all": 75.0}, note="maple")})
    both = build_report(spec, load_results([folder]), VIEWS.get, VERSION, cards).paper_notes
    assert both == ["Table 1, coop: the paper keeps the best test epoch"]  # a note restating its row is left out
    assert md.index("Paper numbers") > md.index("| coop")  # under the table, not in the caption
    assert "Paper numbers" not in render(build_report(from_dict(ReportSpec, {**dict(
        title="T", columns=["smoke"], rows=["coop"]), "reported": False}, ""), load_results([folder]), VIEWS.get,
        VERSION, cards), "md")


def test_companion_tables_get_files_of_their_own(folder, tmp_path):
    from bench.cli.report import output_paths

    files = render_files(report_of(folder), "latex", split=True)
    assert list(files) == ["", "paired-tests", "friedman", "intervals"]
    assert "Paired tests" not in files[""] and "Paired tests" in files["paired-tests"]
    paths = output_paths(tmp_path / "tables" / "t.tex", "smoke", "latex", files)
    assert [p.name for p in paths] == ["t.tex", "t-paired-tests.tex", "t-friedman.tex", "t-intervals.tex"]
    assert [p.name for p in output_paths(tmp_path, "smoke", "md", {"": "", "paired-tests": ""})] == [
        "smoke.md", "smoke-paired-tests.md"]  # a folder: named after the spec
    assert next(iter(output_paths(tmp_path / "stem", "smoke", "html", {"": ""}))).name == "stem.html"
    document = render_files(report_of(folder), "latex", standalone=True, split=True)["paired-tests"]
    assert document.startswith("\\documentclass{article}") and document.rstrip().endswith("\\end{document}")


def test_tables_use_display_labels_from_protocols_cards_and_the_spec(folder):
    views = {name: {**view, "label": {"smoke": "Smoke-LT", "smoke_b2n": ""}.get(name, "")}
             for name, view in VIEWS.items()}
    cards = {**CARDS, "coop": MethodCard("p", "c", label="CoOp", reported=CARDS["coop"].reported)}
    spec = from_dict(ReportSpec, {"title": "T", "rows": ["coop", {"method": "maple", "label": "MaPLe (ours)"},
                                                         {"method": "zeroshot", "set": {"templates": ["a {}."]}}],
                                  "columns": ["smoke", {"protocols": "smoke_b2n", "label": "B2N"}],
                                  "reference": "coop"}, "")
    report = build_report(spec, load_results([folder]), views.get, VERSION, cards)
    assert [g.label for g in report.groups] == ["Smoke-LT", "B2N"]
    assert report.row_labels == {"coop": "CoOp", "MaPLe (ours)": "MaPLe (ours)",
                                 "zeroshot (templates=['a {}.'])": "zeroshot (templates=['a {}.'])"}
    md = render(report, "md")
    assert "| CoOp " in md and "| Smoke-LT" in md and "| B2N" in md and "Paired tests against CoOp" in md
    assert "| coop " not in md  # the id stays the spec's handle (reference: coop), not the table's text


def chromium() -> str:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome") or ""


def test_html_is_a_standalone_page_with_a_row_group_per_method(folder):
    html = render(report_of(folder), "html")
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html and "<style>" in html
    assert html.count("<table class=\"sortable\">") == 4  # the report and its three companion tables
    main = html.split("</table>")[0]
    assert main.count("<tbody>") == 3 and '<tr class="paper">' in main  # coop's paper row moves with it


@pytest.mark.skipif(not chromium(), reason="needs a headless browser (Debian: apt-get install chromium)")
def test_html_renders_and_sorts_in_a_real_browser(folder, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(report_of(folder), "html"))
    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    shot = tmp_path / "report.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    # columns: method, ours/paper/gap, n, smoke, smoke_b2n (maple 73 > coop 71 > zeroshot 60), Mean
    for column, order in ((4, ["maple", "coop", "zeroshot"]), (5, ["coop", "maple", "zeroshot"])):
        dom = subprocess.run([*browser, "--dump-dom", page.as_uri() + f"#sort={column}"], capture_output=True,
                             timeout=120, text=True).stdout
        table = dom.split("<table")[1]
        assert re.findall(r'<tr class="ours"><td class="lead">([^<]+)</td>', table) == order  # whole groups moved
        assert 'class="sorted-desc"' in table


@pytest.mark.parametrize("mode, shown, absent", [
    ("rows", ["| coop (paper)", "| coop (gap)", "+2.00"], []),
    ("inline", ["81.00 ± 1.00 (+2.00)"], ["(paper)"]),
    ("none", [], ["(paper)", "79.00", "+2.00"]),
])
def test_paper_rows_follow_the_spec(folder, mode, shown, absent):
    text = render(report_of(folder, paper_rows=mode), "md").split("\n\n### ")[0]
    assert all(s in text for s in shown) and not any(a in text for a in absent), text
    tex = render(report_of(folder, paper_rows=mode), "latex")
    assert ("\\scriptsize (+2.00)" in tex) == (mode == "inline")


def test_stacked_layout_puts_each_protocol_in_a_block_of_rows(folder, tmp_path):
    report = report_of(folder, layout="stacked", metrics=["all", "many"])
    text = render(report, "md")
    assert "| smoke / coop " in text and "| smoke\\_b2n / maple " in text and "| Mean / zeroshot " in text
    assert "| smoke / coop (paper) " in text  # the paper's number inside its dataset's block
    header = next(line for line in text.splitlines() if line.startswith("|") and "All" in line)
    assert [c.strip() for c in header.strip("|").split("|")][1:] == ["All", "Many"]
    assert "**81.00 ± 1.00**" in text  # marks per (dataset, metric) as in the wide layout
    tex = render(report, "latex", fit="textwidth", standalone=True)
    assert tex.split("\\end{table}")[0].count("\\midrule") == 3  # under the header, above blocks 2 and 3
    if shutil.which("pdflatex"):
        assert compile_problems(tex, tmp_path / "stacked.tex") == []


TWINS = {"lt": "smoke", "b2n_lt100": "smoke_b2n", "b2n_lt16": "smoke_b2n", "xd_lt100": "smoke_xd_dg",
         "xd_lt16": "smoke_xd_dg", "b2n_fs": "smoke_b2n_fs"}  # protocol family -> its smoke twin


def test_every_protocol_family_has_a_smoke_twin():
    from bench.config.protocol import load_protocol
    from bench.config.recipes import FAMILIES

    assert set(TWINS) == set(FAMILIES)
    for twin in set(TWINS.values()):  # each twin is of one of the families it stands in for
        assert TWINS[load_protocol(twin).family] == twin


@pytest.fixture(scope="module")
def twin_results(tmp_path_factory):
    """Real `bench run` cells on every smoke twin: zero-shot CLIP and a one-epoch CoOp, two seeds."""
    folder = tmp_path_factory.mktemp("twins")
    for twin in dict.fromkeys(TWINS.values()):
        assert main(["run", "--protocol", twin, "--method", "zeroshot", "coop", "--seeds", "1", "2", "--no-progress",
                     "--set", "coop.train.epochs=1", "--set", "coop.train.warmup_epochs=0",
                     "--results-dir", str(folder)]) == 0
    return folder


def twin_spec(spec) -> dict:
    """A shipped spec on the smoke twins: each column on its family's twin, the metrics the twin's
    records have, the rows zero-shot and CoOp (the methods run there)."""
    from bench.cli.leaderboard import protocol_view

    columns, seen = [], set()
    for group in expand_columns(spec):
        twin = TWINS[protocol_view(*group.sources[group.members[0]])["identity"]["family"]]
        metrics = [m for m in (group.metrics or spec.metrics or []) if m in TWIN_METRICS[twin]] or None
        column = {"mean_of": twin, "label": f"mean {group.name}"} if group.is_mean else {"protocols": twin}
        if (twin, group.is_mean) not in seen:
            seen.add((twin, group.is_mean))
            columns.append({**column, **({"metrics": metrics} if metrics else {})})
    coop = {"method": "coop", "label": "CoOp, 1 epoch", "set": {"train.epochs": 1, "train.warmup_epochs": 0}}
    return {"title": spec.title, "columns": columns, "rows": ["zeroshot", coop], "reference": "zeroshot",
            "layout": spec.layout, "paper_rows": spec.paper_rows, "digits": spec.digits, "seeds": [1, 2]}


TWIN_METRICS = {
    "smoke": {"all", "many", "medium", "few", "macro_f1"}, "smoke_b2n": {"base", "new", "hm", "hm_macro_f1", "many"},
    "smoke_b2n_fs": {"base", "new", "hm", "hm_macro_f1"},
    "smoke_xd_dg": {"source", "xd_mean", "dg_mean", "source_macro_f1", "xd_mean_macro_f1", "dg_mean_macro_f1"}}
COSTS = {"params_m", "epoch_s", "eval_s", "train_img_s", "eval_img_s"}


@pytest.mark.slow  # every shipped spec, real runs
def test_every_shipped_spec_renders_real_records_of_the_smoke_twins(twin_results, tmp_path):
    """The shipped layouts on records that real cells wrote (nulls, cost fields, code versions), not
    fabricated rows: each renders in every format, LaTeX compiles where pdflatex is installed."""
    from bench.cli.leaderboard import protocol_view
    from bench.config.catalog import available_reports

    load_builtins()
    for twin in TWIN_METRICS:
        TWIN_METRICS[twin] |= COSTS
    cards = all_cards()
    results = load_results([twin_results])
    for name in available_reports():
        spec = from_dict(ReportSpec, twin_spec(load_spec(name)), "")
        report = build_report(spec, results, protocol_view, VERSION, cards)
        assert not report.incomplete and all(report.best.values()), name
        for fmt in ("md", "html"):
            assert render(report, fmt), (name, fmt)
        tex = render(report, "latex", fit="textwidth", standalone=True)
        assert latex_problems(render(report, "latex")) == [], name
        if shutil.which("pdflatex"):
            assert compile_problems(tex, tmp_path / f"{name}.tex") == [], name


def test_printed_averages_on_the_cards_agree_with_the_papers_columns():
    """Where a paper prints an average over a table's protocols (filed on a card under the glob) and
    the card also has its per-protocol numbers, the printed average is their mean (to rounding): the
    paper row of a mean column reproduces what the paper prints (LAMP Table 5 = Table 1's row)."""
    from bench.cli.leaderboard import protocol_view
    from bench.config.catalog import available_reports
    from bench.reporting.report import reported_value

    load_builtins()
    checked = []
    for name in available_reports():
        spec = load_spec(name)
        for group in (g for g in expand_columns(spec) if g.is_mean):
            for row in spec.rows if spec.rows != "all" else []:
                card = all_cards()[row.method]
                for metric in group.metrics or spec.metrics or []:
                    printed = reported_value(row, group.pattern, metric, card, True,
                                             protocol_view(*group.sources[group.members[0]]))
                    # the same table's per-protocol numbers (LAMP Table 2's MaPLe), else the method's own
                    # (LAMP Table 5's averages are Table 1's rows)
                    same = row if row.set else RowSpec(row.method, reported_from=row.reported_from)
                    own = [reported_value(same, p, metric, card, True, protocol_view(*group.sources[p]))
                           for p in group.members]
                    if None in own and not row.set:
                        own = [reported_value(RowSpec(row.method), p, metric, card, True, protocol_view(*group.sources[p]))
                               for p in group.members]
                    if printed is not None and None not in own:
                        assert printed == pytest.approx(statistics.fmean(own), abs=0.01), (name, row.name, metric)
                        checked.append((name, row.name, metric))
    assert ("lamp_table5", "lamp", "hm") in checked and ("lamp_table5", "lamp", "hm_macro_f1") in checked


def test_latex_options_without_latex_are_one_error_line(capsys):
    assert main(["report", "smoke", "--fit", "textwidth"]) == 2
    err = capsys.readouterr().err
    assert err == "bench: error: --fit, --standalone, --float and --font shape LaTeX; add --format latex\n"


def test_page_shape_fields_shape_the_latex(folder):
    """float, std, panels, notes, font, colsep and caption as a paper prints its table."""
    tex = render(report_of(folder, float_env="table*", std="subscript", font="scriptsize", colsep=3.0,
                           caption="Accuracy on the smoke twins"), "latex")
    assert "\\begin{table*}" in tex and "\\end{table*}" in tex and "\\begin{table}\n" not in tex.split("% ")[0]
    assert "\\caption{Accuracy on the smoke twins. Mean (sample std in small type)" in tex
    assert "\\scriptsize\n\\setlength{\\tabcolsep}{3pt}\n\\providecommand{\\benchbold}" in tex
    assert "\\benchbold{81.}{00}$_{\\pm 1.00}$" in tex and " $\\pm$ " not in tex.split("\\end{table*}")[0]
    assert "81.00<sub>±1.00</sub>" in render(report_of(folder, std="subscript"), "md")
    main = render_files(report_of(folder), "latex", split=True)[""]
    assert "\\footnotesize\n\\providecommand" in main and "\\setlength" not in main  # LaTeX's 6 pt stays
    assert main.index("\\end{table}") < main.index("Std: sample standard deviation")  # notes: below
    inside = render_files(report_of(folder, notes="inside"), "latex", split=True)[""]
    assert inside.index("Std: sample standard deviation") < inside.index("\\end{table}")
    assert "Std: sample" not in render_files(report_of(folder, notes="none"), "latex", split=True)[""]


def test_panels_stack_column_groups_in_one_tabular(folder):
    """LAMP Table 1's shape: the datasets in stacked panels, each with its own header."""
    tex = render_files(report_of(folder, panels=2), "latex", split=True)[""]
    assert tex.count("\\begin{tabular}") == 1 and tex.count("\\toprule") == 1 and "\\midrule\\midrule" in tex
    first, second = tex.split("\\begin{tabular}")[1].split("\\midrule\\midrule")
    assert "smoke\\_b2n" in first and "Mean" not in first and "Mean" in second
    assert latex_problems(tex) == []
    md = render(report_of(folder, panels=2), "md")
    main_md = md.split("\n\n### ")[0]  # before the companion tables
    assert main_md.count("\n|:--") == 2 and "| Mean" in main_md.split("\n\n")[2]
    with pytest.raises(ConfigError, match="panels"):
        report_of(folder, panels=2, layout="stacked")


def test_the_seed_count_column_only_where_rows_differ(folder):
    """Papers print no n: the caption names the seeds; a row with fewer seeds brings the column back."""
    header = lambda report: render(report, "md").split("\n")[2]  # noqa: E731  (the main table's)
    assert header(report_of(folder)).split("|")[2].strip() == "smoke"
    put(folder, "smoke", "zeroshot", 4, {"all": 60.0})
    assert header(report_of(folder, seeds=[1, 2, 3, 4])).split("|")[2].strip() == "n"


def test_landscape_keeps_the_notes(folder):
    for notes in ("below", "inside"):
        tex = render(report_of(folder, notes=notes), "latex", fit="landscape")
        assert "\\begin{sidewaystable}" in tex and "Std: sample standard deviation" in tex, notes


def test_shipped_specs_have_unique_whole_word_labels():
    from types import SimpleNamespace

    from bench.config.catalog import available_reports
    from bench.reporting.render_latex import label_of

    labels = {name: label_of(SimpleNamespace(spec=load_spec(name), title="")) for name in available_reports()}
    assert len(set(labels.values())) == len(labels)
    assert labels["cpt_b2n_tau0.25"] == "tab:cpt-b2n-tau0.25" and labels["cpt_b2n_tau0.06"] == "tab:cpt-b2n-tau0.06"


def test_output_folder_is_made_and_keeps_the_whole_spec_name(twin_results, tmp_path, capsys):
    for tau in ("0.25", "0.06"):
        (tmp_path / f"mine_tau{tau}.yaml").write_text(f"title: tau {tau}\ncolumns: [smoke]\nrows: [zeroshot, coop]\n")
        out = tmp_path / "paper" / "tables"
        assert main(["report", str(tmp_path / f"mine_tau{tau}.yaml"), "--format", "latex", "--output", f"{out}/",
                     "--results-dir", str(twin_results)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert "mine_tau0.25.tex" in written and "mine_tau0.06.tex" in written
    assert "\\label{tab:mine-tau0.25}" in (out / "mine_tau0.25.tex").read_text()
    from bench.cli.report import output_paths

    assert [p.name for p in output_paths("x/cpt_b2n_tau0.25", "s", "latex", {"": ""})] == ["cpt_b2n_tau0.25.tex"]
    assert [p.name for p in output_paths("x/t.txt", "s", "md", {"": "", "friedman": ""})] == ["t.txt",
                                                                                             "t-friedman.txt"]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs a TeX engine (pdflatex; .ci/run installs it)")
def test_the_readability_gate_measures_what_a_paper_would_print(tmp_path):
    """LAMP Table 1 as one panel in one column would print its numbers at about 2 pt: the gate says so."""
    import dataclasses
    import random

    from bench.cli.leaderboard import protocol_view

    load_builtins()
    cards = all_cards()
    shipped = load_spec("lamp_b2n_imb10")
    fabricate(tmp_path, shipped, protocol_view, random.Random(0))
    for spec, expected in [(shipped, 7.0), (dataclasses.replace(shipped, panels=1, float_env="table"), None)]:
        report = build_report(spec, load_results([tmp_path]), protocol_view, VERSION, cards)
        [size], problems = printed_sizes(render_files(report, "latex", split=True)[""], tmp_path / "page.tex")
        if expected:
            assert size == expected and problems == []
        else:
            assert size < 3 and problems and float(problems[0]) > 500  # overfull by more than a page's width


def test_page_options_on_the_command_line(twin_results, capsys):
    code = main(["report", "smoke", "--format", "latex", "--float", "table*", "--std", "subscript", "--font",
                 "scriptsize", "--notes", "none", "--results-dir", str(twin_results)])
    out = capsys.readouterr().out
    assert code == 0 and "\\begin{table*}" in out and "\\scriptsize" in out and "$_{\\pm" in out
    assert "Std: sample" not in out.split("\\end{table*}")[1].split("\\begin{table}")[0]
    assert main(["report", "smoke", "--font", "small", "--results-dir", str(twin_results)]) == 2
    assert "--font shape LaTeX; add --format latex" in capsys.readouterr().err


def test_paper_rows_show_only_what_the_paper_printed(folder):
    """A Mean over paper cells the paper never printed is marked as computed; a printed "–" stays a dash,
    with the card's reason in the notes; a printed average filed under the spec's glob is the Mean's."""
    cards = {**CARDS, "coop": MethodCard("p", "c", reported={
        "smoke": Reported("Table 1", {"all": 79.0}), "smoke_b2n": Reported("Table 1", {"all": 69.0}),
        "smoke_xd_dg": Reported("Table 1", {"all": None}, note="the paper prints '–': out of memory")})}
    build = lambda **spec: build_report(from_dict(ReportSpec, {  # noqa: E731
        "title": "T", "rows": ["coop", "maple", "zeroshot"], "reference": "zeroshot", **spec}, ""),
        load_results([folder]), VIEWS.get, VERSION, cards)
    report = build(columns=["smoke", "smoke_b2n"])
    mean = report.cells[("coop", MEAN, "all")]
    assert (mean.reported, mean.paper) == (74.0, "computed")
    md = render(report, "md")
    assert "74.00‡" in md and "‡: the mean of the paper's numbers in the row, which the paper does not print" in md
    assert "74.00\\rlap{$^\\ddagger$}" in render(report, "latex")  # as wide as the column's widest tail
    for (protocol, method), values in ALL.items():
        if protocol == "smoke":
            for seed, value in zip((1, 2, 3), values):
                put(folder, "smoke_xd_dg", method, seed, {"all": value})
    dashed = build(columns=["smoke", "smoke_xd_dg"])
    assert dashed.cells[("coop", "smoke_xd_dg", "all")].paper == "dash"
    assert dashed.cells[("coop", MEAN, "all")].reported is None  # no mean over a dash
    md = render(dashed, "md")
    paper_row = next(line for line in md.splitlines() if "(paper)" in line)
    assert [c.strip() for c in paper_row.split("|")][2:5] == ["79.00", "–", ""] and "out of memory" in md
    cards["coop"].reported["smoke*"] = Reported("Table 1", {"all": 70.5})  # the paper's printed Avg, under the glob
    printed = build(columns=["smoke*"]).cells[("coop", MEAN, "all")]
    assert (printed.reported, printed.paper) == (70.5, "")


def test_latex_escapes_a_bar_and_titles_keep_one_pair_of_brackets():
    from bench.reporting.render_latex import escape
    from bench.reporting.selection import titled

    assert escape("a|b <c> −1") == "a\\textbar{}b \\textless{}c\\textgreater{} $-$1"  # OT1 prints | as an em dash
    views = {"smoke": {"identity": {"backbone": {"name": "synthetic_clip", "model": "bench-tiny-vit"}}}}
    title = titled("Smoke protocol (synthetic data, tiny CLIP)", views)
    assert title.count("(") == 1 and title.endswith("; synthetic clip bench-tiny-vit)"), title


def test_a_method_without_results_but_with_paper_numbers_is_a_paper_row(folder):
    """Candle where it cannot run: the paper's row with a note, not an incomplete row of dashes."""
    cards = {**CARDS, "candle": MethodCard("p", "c", label="Candle", reported={"smoke": Reported("T", {"all": 77.0})})}
    spec = from_dict(ReportSpec, {"title": "T", "columns": ["smoke"], "rows": ["coop", "maple", "candle"]}, "")
    report = build_report(spec, load_results([folder]), VIEWS.get, VERSION, cards)
    assert report.paper_only == ["candle"] and "candle" not in report.incomplete
    assert report.complete() == ["coop", "maple"]
    md = render(report, "md")
    assert "| Candle (paper) | 77.00" in md and "| Candle " not in md.replace("| Candle (paper)", "")
    assert "Candle: the paper's numbers only, with no result of ours." in md and "Candle \\*" not in md


def test_headers_in_the_papers_words(tmp_path):
    """Dataset names from the protocol's evaluation labels (not ids), the spec's headers (LAMP's HM-A),
    and Greek letters for tau and beta; an evaluation's label is not part of the protocol's identity."""
    import random

    from bench.cli.leaderboard import protocol_view

    load_builtins()
    view = protocol_view("xd_dg_lamp/imb100")
    assert view["metric_labels"]["oxford_flowers"] == "Flowers102" and "label" not in str(view["identity"])
    cards = all_cards()
    for name, wanted, unwanted in [("xd_dg_lamp_f1", "| Flowers102", "oxford"), ("lamp_b2n_imb10", "HM-M", "HM F1")]:
        spec = load_spec(name)
        fabricate(tmp_path / name, spec, protocol_view, random.Random(0))
        md = render(build_report(spec, load_results([tmp_path / name]), protocol_view, VERSION, cards), "md")
        head = md.split("\n")[2]
        assert wanted in head and unwanted not in head, head
    from bench.reporting.render_latex import escape

    assert escape("B2N, tau = 0.25; beta = 2; tau0.25") == "B2N, $\\tau$ = 0.25; $\\beta$ = 2; tau0.25"


@pytest.mark.slow  # a bench process
def test_rendering_from_results_never_imports_torch(twin_results, tmp_path):
    """The method cards come from a cache of this code's cards: a report is pandas and scipy only."""
    import os
    import sys

    probe = ("import sys; from bench.cli import main; code = main(['report', 'smoke', '--results-dir', sys.argv[1]]); "
             "print('torch' in sys.modules, 'open_clip' in sys.modules, code, file=sys.stderr)")
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    runs = [subprocess.run([sys.executable, "-c", probe, str(twin_results)], capture_output=True, text=True, env=env)
            for _ in range(2)]
    first, second = [r.stderr.strip().splitlines()[-1] for r in runs]
    assert first == "True True 0" and second == "False False 0", [r.stderr[-500:] for r in runs]
    assert runs[0].stdout == runs[1].stdout  # the same table from the cards' cache
    assert len(list((tmp_path / "cache" / "method-cards").glob("*.json"))) == 1


def test_a_damaged_card_cache_is_a_miss_with_a_warning(tmp_path, monkeypatch, capsys):
    from bench.config import catalog
    from bench.config.cards import MethodCard, Reported

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    cards = {"coop": MethodCard("p", "c", "CoOp", reported={"smoke": Reported("T", {"all": 70.0, "few": None})}),
             "bare": None}
    catalog.save_cards(cards, "plugins")
    assert catalog.load_cards("plugins") == cards and catalog.load_cards("other plugins") is None
    catalog.cards_path("plugins").write_text("{")
    assert catalog.load_cards("plugins") is None and "method card cache" in capsys.readouterr().err


def test_html_shows_its_title_once_and_links_its_companion_pages(twin_results, folder, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["report", "smoke", "--format", "html", "--output", f"{out}/", "--results-dir", str(twin_results)]) == 0
    page = (out / "smoke.html").read_text()
    title = re.search(r"<h1>(.*)</h1>", page).group(1)
    assert page.count(title) == 2  # the window's <title> and the heading, not the caption again
    links = re.findall(r'<a href="([^"]+)">', page)
    written = sorted(p.name for p in out.iterdir())
    assert sorted(links) == [name for name in written if name != "smoke.html"]
    pages = render_files(report_of(folder), "html", split=True, stem="t")  # three companion tables: three links
    assert re.findall(r'<a href="([^"]+)">', pages[""]) == [f"t-{name}.html" for name in list(pages)[1:]]
