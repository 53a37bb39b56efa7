"""Hostile report input (issue 39, round three): what a spec, a method card or a row label says reaches
LaTeX and markdown as text, never as TeX or as table structure; `bench leaderboard` and `bench report`
read the same results, and a result neither can use is skipped with a warning."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import bench
from bench.cli import main
from bench.config.cards import MethodCard, Reported
from bench.core.coerce import from_dict
from bench.records.schema import SCHEMA, read_record, result_name
from bench.reporting.render import render
from bench.reporting.render_latex import label_of
from bench.reporting.report import build_report
from bench.reporting.reportspec import LABEL, ReportSpec
from bench.reporting.results import load_results
from test_overrides import one_error  # noqa: E402  (the CLI helpers)
from test_report import VERSION, VIEWS, folder  # noqa: F401  (folder: the shared fixture)

PDFLATEX = pytest.mark.skipif(shutil.which("pdflatex") is None,
                              reason="needs a TeX engine (pdflatex; .ci/run installs it)")
# Run as TeX, this prints INJECTED to the log; typeset as text, it never reads so (\string stays in between).
INJECT = "\\typeout{INJ\\string ECTED}"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def hostile_report(folder):
    """Every free text of a report at its worst: the spec's title, caption, header, column label, row
    labels and (through its file name) label; a card's label and note; an incomplete row, whose label
    goes into the notes."""
    cards = {"coop": MethodCard("p", "c", reported={"smoke": Reported("T 1", {"all": 79.0}, 'a "quoted" | note\n# H')}),
             "maple": MethodCard("p", "c", label='Ma"PLe |\n## card'), "zeroshot": MethodCard("p", "c")}
    spec = from_dict(ReportSpec, {
        "title": 'Q "a|b"\n# heading', "caption": 'Cap "c" | d\n\n\\par' + INJECT,
        "columns": [{"protocols": "smoke", "label": 'S "1" |\nx'}, "smoke_b2n"], "headers": {"all": 'A|"ll"\n'},
        "rows": ["coop", "maple", {"method": "zeroshot", "label": 'ze|ro "shot"\n| x | y |'},
                 {"method": "coop", "label": "lost\n" + INJECT, "set": {"n_ctx": 16}}],  # no results: incomplete
        "reference": "coop"}, "")
    spec.name = "x}" + INJECT + "{y"  # a spec file's name: the default label
    return build_report(spec, load_results([folder]), VIEWS.get, VERSION, cards)


def test_a_report_label_that_is_not_a_latex_label_is_one_error(capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("title: T\ncolumns: [smoke]\nrows: [zeroshot]\nlabel: 'tab:x}\\input{/etc/hostname}\\label{y'\n")
    error = one_error(capsys, "report", str(spec), "--results-dir", str(tmp_path))
    assert "label: 'tab:x}\\input{/etc/hostname}\\label{y' is no LaTeX label" in error
    assert "use only letters, digits and : . _ -" in error
    for good in ("tab:mdpr-ir100", "fig:cpt_b2n.tau0.25"):
        assert from_dict(ReportSpec, {"title": "T", "columns": ["smoke"], "label": good}, "").label == good


def test_the_default_label_of_a_spec_file_name_holds_only_label_characters(folder):
    assert LABEL.fullmatch(label_of(hostile_report(folder)))


def test_markdown_keeps_each_text_on_its_line_and_in_its_cell(folder):
    md = render(hostile_report(folder), "md")
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert len(headings) == 4 and headings[0].startswith("## Q") and all(h.startswith("### ") for h in headings[1:])
    table = md.split("\n\n")[1].splitlines()
    assert len(table) == 2 + 4 + 1  # the header and its rule, our four rows and the paper's row
    cells = [line.count("|") - line.count("\\|") for line in table]  # the bars that split cells
    assert cells == [6] * len(table), table
    assert "ze\\|ro \"shot\" \\| x \\| y \\|" in table[4] and 'Ma"PLe \\| \\#\\# card' in table[3]
    assert 'a "quoted" \\| note \\# H' in md  # the card's note, in the notes paragraph


def test_latex_of_hostile_text_is_one_line_per_comment_and_escaped(folder):
    tex = render(hostile_report(folder), "latex")
    comments = [line for line in tex.splitlines() if line.startswith("%")]
    assert any("lost \\typeout{INJ\\string ECTED}: lacks" in line for line in comments)  # the break is a space
    assert not re.search(r"^[^%\n]*\\typeout", tex, flags=re.M)  # outside comments, only as escaped text
    assert "\\label{tab:x-typeout-INJ-string-ECTED-y}" in tex
    assert "ze\\textbar{}ro \\textquotedbl{}shot\\textquotedbl{} \\textbar{} x" in tex
    assert "needs \\usepackage[T1]{fontenc}" in tex  # the straight quote's glyph (OT1 has none)


@PDFLATEX
@pytest.mark.slow  # pdflatex (the T1 fonts may be generated on the first run)
def test_hostile_text_compiles_as_text_and_prints_its_bars_and_quotes(folder, tmp_path):
    tex = render(hostile_report(folder), "latex", standalone=True)
    (tmp_path / "hostile.tex").write_text(tex)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "hostile.tex"], cwd=tmp_path,
                          capture_output=True, timeout=300)
    log = (tmp_path / "hostile.log").read_text(errors="replace")
    assert done.returncode == 0, log[-2000:]  # \textquotedbl in OT1 would stop it: T1 is loaded
    assert "INJECTED" not in log
    if shutil.which("pdftotext"):  # what a reader sees: the characters themselves, not — and ”
        text = subprocess.run(["pdftotext", "hostile.pdf", "-"], cwd=tmp_path, capture_output=True, text=True).stdout
        for shown in ('Cap "c" | d \\par\\typeout{INJ\\string ECTED}', 'Ma"PLe | ## card', 'ze|ro "shot" | x | y |',
                      'S "1" | x', 'a "quoted" | note # H'):
            assert shown in text, text
        assert "—" not in text and "”" not in text


def test_a_plain_table_needs_no_other_font_encoding(folder):
    report = hostile_report(folder)
    plain = build_report(from_dict(ReportSpec, {"title": "T", "columns": ["smoke"], "rows": ["coop", "zeroshot"]}, ""),
                         load_results([folder]), VIEWS.get, VERSION, {"coop": MethodCard("p", "c"),
                                                                      "zeroshot": MethodCard("p", "c")})
    assert "fontenc" not in render(plain, "latex", standalone=True)
    assert "\\usepackage[T1]{fontenc}" in render(report, "latex", standalone=True)


# --- results that the leaderboard and the report read alike ------------------------------------

def fabricate(root, protocol, method, seed, metrics, **fields):
    """A result of ``protocol`` as configured now (its real view), written where the store puts it."""
    from bench.cli.leaderboard import protocol_view

    view = protocol_view(protocol)
    reference = view["references"][method]
    config = {"protocol": view["identity"], "method": reference[""], "train": reference["train"]}
    key = "f" * 64
    record = {"schema": SCHEMA, "key": key, "protocol": view["name"], "method": method, "seed": seed,
              "code_version": bench.__version__, "config": config, "metrics": metrics, **fields}
    path = Path(root) / result_name(view["name"], method, key, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def groups(value):
    return {"all": value, "many": value, "medium": value, "few": value}


def test_the_leaderboard_and_the_report_leave_out_the_same_stray_seed(capsys, tmp_path):
    for seed, value in ((1, 50.0), (2, 52.0), (3, 51.0), (9, 10.0)):  # seed 9: not among smoke's 1, 2, 3
        fabricate(tmp_path, "smoke", "zeroshot", seed, groups(value))
    note = "bench: note: left out 1 result(s) of 'smoke' with seed(s) 9: not among its seeds 1, 2, 3"
    code, out, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(tmp_path))
    assert code == 0 and "| zeroshot | 3 | 51.00 ± 1.00 |" in out and note in err
    code, out, err = run(capsys, "report", "smoke", "--results-dir", str(tmp_path))
    assert code == 0 and "51.00<sub>±1.00</sub>" in out and "3 seeds (1, 2, 3)" in out and note in err
    code, out, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(tmp_path),
                         "--set", "protocol.seeds=[1,2,3,9]")
    assert code == 0 and "| zeroshot | 4 |" in out and "left out" not in err  # as the note says


def test_a_per_class_vector_of_another_length_than_the_classes_is_skipped_with_a_warning(capsys, tmp_path):
    for seed in (1, 2, 3):
        fabricate(tmp_path, "smoke", "zeroshot", seed, groups(50.0 + seed), class_train_counts=[9, 5, 3, 1],
                  per_class_accuracy=[50.0, None, 40.0] if seed == 1 else [50.0, None, 40.0, 30.0])
    code, out, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(tmp_path))
    warning = "seed-1.json': it has 3 per-class accuracies for 4 classes (class_train_counts)"
    assert code == 0 and "| zeroshot | 2 |" in out and "bench: warning: skipped '" in err and warning in err
    code, out, err = run(capsys, "report", "smoke", "--results-dir", str(tmp_path))
    assert code == 0 and warning in err and "Zero-shot CLIP \\*" in out  # seed 1 lacks: incomplete, not averaged


@pytest.mark.parametrize("fields, problem", [
    ({"per_class_accuracy": "50"}, "per_class_accuracy that is not a list of percentages"),
    ({"per_class_accuracy": [50.0, 101.0]}, "per_class_accuracy that is not a list of percentages"),
    ({"per_class_accuracy": [50.0], "class_train_counts": [True]}, "class_train_counts that is not a list"),
    ({"per_class_accuracy": [50.0], "class_train_counts": [3, 1]}, "has 1 per-class accuracies for 2 classes"),
])
def test_a_record_with_unusable_parts_is_refused(tmp_path, fields, problem):
    path = tmp_path / "seed-1.json"
    path.write_text(json.dumps({"schema": SCHEMA, "key": "k" * 64, "protocol": "smoke", "method": "coop", "seed": 1,
                                "code_version": "0", "config": {}, "metrics": {"all": 50.0}, **fields}))
    data, found = read_record(path)
    assert data is None and problem in found


def test_a_base_to_new_result_with_hm_alone_is_skipped_by_the_leaderboard(capsys, tmp_path):
    from bench.config.catalog import match_protocols

    first, second = match_protocols("b2n_lamp/*/imb10")[:2]
    for seed in (1, 2, 3):
        fabricate(tmp_path, first, "zeroshot", seed, {"hm": 60.0 + seed})  # an older bench's, or a plugin's
        fabricate(tmp_path, second, "zeroshot", seed, {"base": 70.0, "new": 60.0, "hm": 64.62})
    code, out, err = run(capsys, "leaderboard", "--protocol", "b2n_lamp/*/imb10", "--results-dir", str(tmp_path))
    assert code == 0 and "Traceback" not in err, err
    assert err.count("it has metrics.hm without metrics.base and metrics.new") == 3
    assert "| zeroshot | 64.62 | 70.00 | 60.00 | 64.62 | 64.62 |" in out


def test_a_leaderboard_label_stays_in_its_cell_and_on_its_line():
    from bench.reporting.leaderboard import Row, across_protocols, markdown_table

    row = Row("zeroshot", "k", [1], {"all": [50.0]}, label="zeroshot (templates=[a | {}\nb])")
    for table in (markdown_table([row]), across_protocols({"smoke": [row], "smoke_b2n": [row]})):
        lines = table.splitlines()
        assert len(lines) == 3 and "zeroshot (templates=[a \\| {} b])" in lines[2], table
        assert lines[2].count("|") - lines[2].count("\\|") == lines[0].count("|")
