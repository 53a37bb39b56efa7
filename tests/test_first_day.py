"""A newcomer's, a method author's and a cluster user's first day (issue 37), through the `bench` command."""
import pytest
import yaml

from bench.cli import main
from bench.config.recipes import FAMILIES
from bench.core.registry import METHODS
from bench.engine.eligibility import missing_recipe


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def spec_file(tmp_path, rows, column: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"title": "T", "columns": [column], "seeds": [1], "rows": rows}))
    return str(path)


def table_methods(out: str) -> set:
    """The methods of `bench plan` / `bench status` table rows."""
    return {line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| ") and "|---" not in line
            and not line.startswith("| Protocol") and not line.startswith("| all ")}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_built_in_trained_method_has_a_recipe_for_every_family(family):
    """--method all leaves out a method with no recipe for a family: no built-in card may be left out so."""
    assert [name for name in METHODS.names() if missing_recipe(name, family)] == []


def test_a_plugin_without_a_recipe_for_the_family_is_noted_and_left_out_of_all(capsys, tmp_path, new_process):
    assert main(["new", "method", "tipf", "--dir", str(tmp_path)]) == 0  # its card: an `lt` recipe only
    plugin, results = str(tmp_path / "tipf.py"), str(tmp_path / "results")
    capsys.readouterr()
    code, out, err = run(capsys, "run", "--plugin", plugin, "--protocol", "smoke_b2n", "--method", "tipf",
                         "--seeds", "1", "--results-dir", results, "--no-progress")
    assert code == 0 and "1 ran" in out, err
    assert ("bench: note: tipf on smoke_b2n: its card has no recipe for family 'b2n_lt100' (its recipes: lt), "
            "so engine defaults apply") in out
    code, out, err = run(capsys, "run", "--plugin", plugin, "--protocol", "smoke", "--method", "tipf",
                         "--seeds", "1", "--results-dir", results, "--no-progress")
    assert code == 0 and "bench: note" not in out + err  # its family's recipe: nothing to say
    left_out = "bench: note: tipf is left out of smoke_b2n: its card has no recipe for family 'b2n_lt100'"
    spec = spec_file(tmp_path, ["tipf", "zeroshot"], "smoke_b2n")  # a report's rows are chosen as --method all
    code, out, err = run(capsys, "run", "--plugin", plugin, "--report", spec, "--results-dir", results,
                         "--no-progress")
    assert code == 0 and left_out in out and "bench: 1 cells: 1 ran" in out, out + err
    for command in ("plan", "status"):
        code, out, err = run(capsys, command, "--plugin", plugin, "--protocol", "smoke_b2n", "--method", "all",
                             "--results-dir", results)
        assert code == 0 and left_out in err and "tipf" not in out and "zeroshot" in table_methods(out), err


def test_plan_and_status_choose_the_methods_run_chooses(capsys, tmp_path):
    """After a run that leaves out the methods needing a knowledge base, plan and status do not list them
    as to do forever: all three choose by one rule, with the same notes."""
    results = str(tmp_path / "results")
    spec = spec_file(tmp_path, ["mdpr_coop", "zeroshot"], "smoke")
    code, out, err = run(capsys, "run", "--report", spec, "--results-dir", results, "--no-progress")
    note = "bench: note: mdpr_coop is left out of smoke: method mdpr_coop.kb: needs a knowledge-base file"
    assert code == 0 and note in out and "bench: 1 cells: 1 ran" in out, out + err
    for command in ("plan", "status"):
        code, out, err = run(capsys, command, "--report", spec, "--results-dir", results)
        assert code == 0 and note in err and table_methods(out) == {"zeroshot"}, out + err
        assert "| all | 1 rows | 1 | 0 | 0 | 0 | 0 |" in out  # nothing left to do
    code, out, err = run(capsys, "plan", "--protocol", "smoke", "--results-dir", results)  # --method all
    assert code == 0 and note in err and "bench: note: mdpr_maple is left out of smoke" in err
    assert {"coop", "zeroshot", "mdpr_coop_offlinekb"} <= table_methods(out)
    assert not {"mdpr_coop", "mdpr_maple"} & table_methods(out)
    code, out, err = run(capsys, "status", "--protocol", "smoke", "--method", "mdpr_coop", "--results-dir", results)
    assert code == 0 and table_methods(out) == {"mdpr_coop"}  # named alone: listed (run names its error)


def test_feature_cache_names_the_methods_it_does_not_apply_to(capsys, tmp_path):
    results = str(tmp_path / "results")
    code, out, err = run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "maple", "--seeds", "1",
                         "--feature-cache", "2", "--results-dir", results, "--no-progress")
    assert code == 0 and "2 ran" in out, out + err
    assert "bench: note: --feature-cache does not apply to maple: they run prompts inside the image tower" in err
    assert "zeroshot" not in err
    code, out, err = run(capsys, "plan", "--protocol", "smoke", "--method", "coop", "--feature-cache", "2",
                         "--results-dir", results)
    assert code == 0 and "--feature-cache" not in err


# Items 10 and 11: a fast test tier, and the small things a newcomer meets first.
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_the_fast_tier_is_a_registered_marker_named_in_the_readme():
    """`-m "not slow"` is the contributors' tier; the default run (CI's) leaves out only `heavy`."""
    import tomllib

    pytest_config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert {m.split(":")[0] for m in pytest_config["markers"]} >= {"slow", "heavy"}
    assert "-m 'not heavy'" in pytest_config["addopts"]
    setup = (ROOT / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    assert 'python -m pytest -q -n 2 -m "not slow"' in setup


def test_version(capsys):
    from importlib.metadata import version

    import bench

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"bench {bench.__version__}\n"
    assert version("lt-prompt-bench") == bench.__version__  # the installed package is this code


def test_run_help_is_grouped_and_every_option_says_what_it_does(capsys):
    from bench.cli import build_parser

    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.index("selection:") < out.index("execution:") < out.index("SLURM:")
    groups = out.split("\nselection:", 1)[1]  # after the usage lines
    assert groups.index("  --protocol") < groups.index("execution:") < groups.index("  --workers") < groups.index("SLURM:")
    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]
    assert [a.option_strings for a in run_parser._actions if not a.help] == []


def test_list_folds_a_grid_files_protocols_and_all_names_each(capsys):
    code, out, _ = run(capsys, "list", "protocols")
    assert code == 0 and "  b2n_lamp/<dataset>/<imb_ratio>  " in out and "55 protocols: LAMP" in out
    assert "b2n_lamp/eurosat/imb10" not in out and "  smoke  " in out and "--all" in out
    assert len(out.splitlines()) < 40
    code, out, _ = run(capsys, "list", "protocols", "--all")
    assert code == 0 and "  b2n_lamp/eurosat/imb10  " in out and "<dataset>" not in out


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_what_a_first_run_writes_is_ignored_by_git():
    import subprocess

    written = ["results/smoke/coop/0123456789ab/seed-1.json", "results/smoke/coop/0123456789ab/seed-1.ckpt",
               "results/.slurm/x/task-0.err", "kb/smoke.json"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *written, "results/README.md"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == written  # and the folder's README stays tracked


def test_several_missing_datasets_are_named_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no data roots file
    monkeypatch.delenv("BENCH_DATA_ROOTS", raising=False)
    code, out, err = run(capsys, "run", "--protocol", "b2n_lamp/*/imb10", "--method", "zeroshot", "--device", "cpu",
                         "--results-dir", str(tmp_path / "results"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("bench: error: 11 datasets cannot be read"), err
    assert f"(under '{tmp_path / 'data' / 'coop'}')" in err and "`bench data list`" in err
    assert all(f"'{folder}' is missing" in err for folder in ("caltech-101", "eurosat", "imagenet", "ucf101"))


def test_one_protocol_reading_several_datasets_names_every_missing_one(capsys, tmp_path, monkeypatch):
    """xd_dg_lamp trains on ImageNet and scores 14 other datasets: all 15 are named, not the first."""
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("BENCH_DATA_ROOTS", raising=False)
    code, out, err = run(capsys, "run", "--protocol", "xd_dg_lamp", "--method", "zeroshot", "--device", "cpu",
                         "--results-dir", str(tmp_path / "results"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("bench: error: 15 datasets cannot be read"), err
    assert all(f"'{folder}' is missing" in err for folder in ("imagenet", "eurosat", "imagenet-sketch", "imagenet-rendition"))
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()]  # nothing written


def test_default_data_roots_are_the_same_from_any_folder(tmp_path, monkeypatch):
    from bench.config.protocol import load_protocol

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no data roots file
    monkeypatch.delenv("BENCH_DATA_ROOTS", raising=False)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    roots = set()
    for folder in (tmp_path, ROOT):
        monkeypatch.chdir(folder)
        roots |= {load_protocol("b2n_lamp/eurosat/imb10").dataset.root, load_protocol("cifar100_lt_ir10").dataset.root}
    assert roots == {str(tmp_path / "data" / "coop"), str(tmp_path / "data" / "cifar100")}
    monkeypatch.delenv("BENCH_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert load_protocol("places_lt").dataset.root == str(tmp_path / "share" / "lt-prompt-bench" / "places365")


def test_the_failure_record_is_what_the_readme_says(tmp_path):
    import json
    import re

    from bench.engine.store import ResultStore

    path = ResultStore(tmp_path).write_failure("smoke", "coop", "k" * 64, 1, "ValueError: x", "Traceback ...")
    said = (ROOT / "README.md").read_text().split("records its error (`seed-<seed>.failed`", 1)[1].split(") and", 1)[0]
    assert path.name == "seed-1.failed" and "`seed-<seed>.traceback.txt`" in said
    assert set(json.loads(path.read_text())) == set(re.findall(r"`(\w+)`", said))
    assert (path.parent / json.loads(path.read_text())["traceback"]).read_text() == "Traceback ..."
