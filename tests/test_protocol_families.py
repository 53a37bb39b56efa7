"""Protocol families: declared evaluations, grid files, and running a table by name or glob."""
import re
import statistics

import pytest
import torch
import yaml

from bench.cli import main
from bench.config.catalog import available_protocols, match_protocols
from bench.config.grid import expand
from bench.config.protocol import EvalPlan
from bench.config.protocol import load_protocol, parse_protocol
from bench.core.errors import BenchError, ConfigError
from bench.data import DatasetBundle
from bench.engine.evaluation import label_spaces, summarise
from bench.engine.metrics import evaluate

from test_evaluation import Items
from test_protocol import SMOKE_LIKE


def parse(**changes):
    return parse_protocol(yaml.safe_load(yaml.safe_dump({**SMOKE_LIKE, **changes})))


def test_grid_expands_every_combination_with_labels():
    data = {"name": "g", "description": "{dataset} at {imb_ratio}", "dataset": {"name": "coop", "shots": 100},
            "grid": {"dataset.dataset": ["dtd", "eurosat"], "dataset.imb_ratio": {"imb10": 0.1, "imb50": 0.02}}}
    cells = expand(data, "g")
    assert list(cells) == ["g/dtd/imb10", "g/dtd/imb50", "g/eurosat/imb10", "g/eurosat/imb50"]
    labelled = expand({**data, "label": "{dataset}", "display": {"eurosat": "EuroSAT"}}, "g")
    assert [c["label"] for c in labelled.values()] == ["dtd", "dtd", "EuroSAT", "EuroSAT"]
    assert "display" not in labelled["g/dtd/imb10"]
    cell = cells["g/eurosat/imb50"]
    assert cell["dataset"] == {"name": "coop", "shots": 100, "dataset": "eurosat", "imb_ratio": 0.02}
    assert cell["description"] == "eurosat at imb50" and "grid" not in cell
    assert data["dataset"] == {"name": "coop", "shots": 100}  # the file's own mapping is untouched


@pytest.mark.parametrize("grid, fragment", [
    ({}, "expected a mapping of dotted field paths"),
    ({"dataset..x": [1]}, "expected a dotted path"),
    ({"dataset.x": []}, "non-empty mapping"),
    ({"dataset.x": {"a/b": 1}}, "label 'a/b'"),
    ({"seeds.x": [1]}, "'seeds' is not a mapping"),
])
def test_bad_grids_name_the_field(grid, fragment):
    with pytest.raises(ConfigError, match=fragment):
        expand({"seeds": [1], "dataset": {}, "grid": grid}, "g")


def test_builtin_tables_read_like_the_papers():
    names = available_protocols()
    assert len([n for n in names if n.startswith("b2n_lamp/")]) == 11 * 5
    assert len([n for n in names if n.startswith("b2n_cpt/")]) == 11 * 3
    assert {"xd_dg_lamp/imb100", "xd_dg_cpt/tau1", "xd_dg_cpt/tau0.25", "xd_dg_cpt/tau0.06"} <= set(names)
    lamp = load_protocol("b2n_lamp/eurosat/imb10")
    assert (lamp.family, lamp.dataset.dataset, lamp.dataset.shots, lamp.dataset.imb_ratio) == \
        ("b2n_lt100", "eurosat", 100, 0.1)
    cpt = load_protocol("b2n_cpt/dtd/tau0.06")
    assert (cpt.family, cpt.dataset.shots, cpt.dataset.imb_ratio, cpt.dataset.classes) == \
        ("b2n_lt16", 16, 0.06, "base_to_new")
    xd = load_protocol("xd_dg_cpt/tau0.25")
    assert (xd.dataset.dataset, xd.dataset.classes, xd.dataset.imb_ratio) == ("imagenet", "all", 0.25)
    groups = [(e.plan.name, e.plan.group) for e in xd.evaluations]
    assert groups[0] == ("imagenet", "") and [n for n, g in groups if g == "xd"] == [
        "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft", "sun397",
        "dtd", "eurosat", "ucf101"]
    assert [n for n, g in groups if g == "dg"] == ["imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    target = xd.evaluations[13]  # merged onto the training block: same root, --data-root moves it too
    assert target.dataset.dataset == "imagenet_a" and target.dataset.root == xd.dataset.root and target.inherits


def test_run_takes_a_name_a_table_or_a_glob():
    assert match_protocols("smoke") == ["smoke"]
    assert match_protocols("xd_dg_cpt") == ["xd_dg_cpt/tau1", "xd_dg_cpt/tau0.25", "xd_dg_cpt/tau0.06"]
    lamp = ["caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft", "sun397",
            "dtd", "eurosat", "ucf101", "imagenet"]  # LAMP Table 1's column order, as the grid lists them
    assert match_protocols("b2n_lamp/*/imb10") == [f"b2n_lamp/{d}/imb10" for d in lamp]
    assert match_protocols("cifar100_lt_ir*")[:2] == ["cifar100_lt_ir10", "cifar100_lt_ir10_liftgroups"]
    with pytest.raises(BenchError, match="no protocol matches"):
        match_protocols("b2n_lamp/*/imb11")
    with pytest.raises(BenchError, match="did you mean 'b2n_lamp/eurosat/imb10'"):
        load_protocol("b2n_lamp/eurosat/imb11")
    with pytest.raises(BenchError, match="is a grid of 55 protocols"):
        load_protocol("b2n_lamp")


def test_a_missing_dataset_of_any_table_cell_fails_before_anything_runs(tmp_path, capsys):
    code = main(["run", "--protocol", "b2n_lamp/*/imb10", "--method", "zeroshot", "--data-root", str(tmp_path / "none"),
                 "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "dataset folder" in err and "is missing" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("evaluations, fragment", [
    ([], "non-empty list"),
    ([{"name": "a b"}], "letters, digits"),
    ([{"name": "a", "clases": "base"}], "did you mean 'classes'"),
    ([{"name": "a", "classes": "old"}], "one of 'all', 'base', 'new'"),
    ([{"name": "a"}, {"name": "a"}], "used twice"),
    ([{"name": "a", "dataset": {"num_clases": 3}}], "protocol.evaluations[0].dataset.num_clases"),
    ([{"name": "a", "dataset": {"name": "imagenet_lt", "splits": 1}}], "unknown field"),
])
def test_bad_evaluations_name_the_field(evaluations, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse(evaluations=evaluations)


def test_declared_evaluations_join_the_identity():
    plain = parse()
    declared = parse(evaluations=[{"name": "test"}, {"name": "shifted", "group": "dg", "dataset": {"data_seed": 3}}])
    assert "evaluations" not in plain.identity()
    assert declared.identity()["evaluations"][1] == {
        "name": "shifted", "classes": "all", "group": "dg",
        "dataset": {**declared.identity()["dataset"], "data_seed": 3}}


def test_other_datasets_are_scored_in_their_own_label_space_matched_by_id():
    source = DatasetBundle(Items([0, 0, 1, 2]), Items([0, 1, 2]), ["crane", "crane", "fox"], [2, 1, 1],
                           class_ids=["n1", "n2", "n3"])
    subset = DatasetBundle(Items([]), Items([0, 1, 1]), ["fox", "crane"], [0, 0], class_ids=["n3", "n2"])
    other = DatasetBundle(Items([]), Items([0, 1]), ["fox", "owl"], [0, 0])  # no ids: never matched
    spaces = label_spaces(source, [(EvalPlan("imagenet"), source), (EvalPlan("a", group="dg"), subset),
                                   (EvalPlan("x", group="xd"), other)])
    own, sub, xd = spaces.evaluations
    assert own.info is spaces.train_info and own.test is source.test
    assert sub.info.classnames == ["fox", "crane"] and sub.info.training_index == [2, 1]  # by id, not by name
    assert sub.info.train_counts == [1, 1]
    assert xd.info.training_index is None and xd.info.train_counts == [0, 0]


def test_groups_are_averaged_and_each_evaluation_keeps_its_accuracy():
    source = DatasetBundle(Items([0, 1]), Items([0, 1]), ["a", "b"], [1, 1])
    others = [DatasetBundle(Items([]), Items([0, 1]), ["c", "d"], [0, 0]) for _ in range(2)]
    spaces = label_spaces(source, [(EvalPlan("src"), source), (EvalPlan("x1", group="xd"), others[0]),
                                   (EvalPlan("x2", group="xd"), others[1])])
    right, wrong = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    results = [evaluate(right, torch.tensor([0, 1]), [1, 1]), evaluate(right, torch.tensor([0, 1]), [0, 0]),
               evaluate(wrong, torch.tensor([0, 1]), [0, 0])]
    metrics = summarise(spaces, results)["metrics"]
    assert (metrics["src"], metrics["x1"], metrics["x2"]) == (100.0, 100.0, 0.0)
    assert metrics["xd_mean"] == 50.0 and "hm" not in metrics and "all" not in metrics
    with_source = summarise(spaces, results, {"xd_with_source": ["src", "x1", "x2"]})["metrics"]
    assert with_source["xd_with_source"] == pytest.approx(200 / 3) and with_source["xd_mean"] == 50.0


@pytest.mark.parametrize("means, fragment", [
    ({"avg": ["test"]}, "two or more"),
    ({"avg": ["test", "nope"]}, "two or more of the evaluations (test, shifted)"),
    ({"test": ["test", "shifted"]}, "must be a new metric name"),
    ({"dg_mean": ["test", "shifted"]}, "must be a new metric name"),
])
def test_bad_means_name_the_field(means, fragment):
    evaluations = [{"name": "test"}, {"name": "shifted", "group": "dg"}]
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        parse(evaluations=evaluations, means=means)
    ok = parse(evaluations=evaluations, means={"avg": ["test", "shifted"]})
    assert ok.identity()["means"] == {"avg": ["test", "shifted"]} and "means" not in parse().identity()


def test_lamp_table3_paper_row_reproduces_its_printed_average():
    """LAMP prints 'Avg. (w/o Source)' 67.44, which is the mean over all 11 columns: the protocol
    records that average (xd_with_source) beside the 10-target mean; the card holds only what LAMP printed."""
    from bench.methods.lamp_tables import XD_COLUMNS, reported

    card = reported()["xd_dg_lamp/imb100"]
    columns = load_protocol("xd_dg_lamp/imb100").means["xd_with_source"]
    assert sorted(columns) == sorted(XD_COLUMNS)
    assert round(statistics.fmean(card.metrics[c] for c in columns), 2) == card.metrics["xd_with_source"] == 67.44
    assert "xd_mean" not in card.metrics  # LAMP prints no mean of the 10 targets alone
    assert "mean over all 11 columns" in card.note


def test_data_list_names_every_dataset_and_where_it_comes_from(capsys, tmp_path):
    (tmp_path / "eurosat").mkdir()
    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("imagenet", "eurosat", "ucf101", "imagenet_r", "imagenet_lt", "places_lt"):
        assert f"  {name} " in out
    assert f"eurosat          found under {tmp_path}" in out and f"dtd              not found under {tmp_path}" in out
    assert "https://www.robots.ox.ac.uk/~vgg/data/dtd/" in out


def test_data_check_reports_missing_files_as_one_error(capsys, tmp_path, monkeypatch):
    from bench.core.registry import DATASETS

    coop = DATASETS.get("coop")
    monkeypatch.setattr(coop, "check", staticmethod(lambda cfg: [("train", 3, []), ("test", 2, [f"{cfg.root}/x.jpg"])]))
    code = main(["data", "check", "coop", "--dataset", "dtd", "--root", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and "dtd train: 3 images listed, all found" in out
    assert f"dtd test: 2 images listed, 1 missing, e.g. {tmp_path}/x.jpg" in out
    assert err.startswith("bench: error: dtd: 1 listed image(s) missing") and err.count("\n") == 1
    monkeypatch.setattr(coop, "check", staticmethod(lambda cfg: [("train", 3, [])]))
    assert main(["data", "check", "dtd", "--root", str(tmp_path)]) == 0


@pytest.mark.parametrize("argv, fragment", [
    (["data", "check", "eurosst"], "did you mean 'eurosat'"),
    (["data", "check", "eurosat", "--root", "/nonexistent/x"], "dataset folder '/nonexistent/x/eurosat' is missing"),
    (["data", "download", "dtd", "--root", "/nonexistent/x"], "nothing to download automatically"),
    (["data", "download", "places_lt"], "the split lists ship with the package"),
])
def test_data_commands_fail_with_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bench: error: ") and fragment in err


def test_show_lists_each_evaluation_with_what_differs_from_the_training_set(capsys):
    assert main(["show", "smoke_xd_dg", "--method", "zeroshot"]) == 0
    out = capsys.readouterr().out
    assert "evaluation  source: all classes of its own test set" in out
    assert "evaluation  shifted_subset [dg]: all classes of synthetic_lt  num_classes=4 data_seed=4 first_class=2 shift=0.3" in out
