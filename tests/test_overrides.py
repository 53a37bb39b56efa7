"""Real runs as users make them: protocol overrides from the command line (any backbone), a user's
grid file, ResNet image towers, seeded random weights, data roots, and no silent empty tables."""
import json
import os
import textwrap
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.config.catalog import match_protocols
from bench.config.overrides import apply_overrides, describe, parse_reference, reference, split_sets
from bench.config.protocol import load_protocol
from bench.core.errors import BenchError, ConfigError


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(capsys, *argv) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("bench: error: "), err[:2000]
    assert len(err) < 2000 and "Traceback" not in err  # a bounded line, never a traceback
    return err


def test_protocol_sets_are_split_from_method_sets_and_read_as_yaml():
    sets, rest = split_sets(["protocol.backbone.model=RN50", "coop.n_ctx=4", "protocol.eval.batch_size=256",
                             "protocol.dataset.root=/data/x", "protocol.backbone.pretrained=null"])
    assert sets == {"backbone.model": "RN50", "eval.batch_size": 256, "dataset.root": "/data/x",
                    "backbone.pretrained": None}
    assert rest == ["coop.n_ctx=4"]
    assert describe({"eval.batch_size": 256, "backbone.model": "RN50"}) == "backbone.model=RN50, eval.batch_size=256"
    name = reference("places_lt", {"backbone.model": "RN50"})
    assert name == "places_lt [backbone.model=RN50]" and parse_reference(name) == ("places_lt", {"backbone.model": "RN50"})
    for bad in ("protocol.name=x", "protocol.grid.a=1", "protocol.backbone.model", "protocol..model=1", "protocol.nope=1"):
        with pytest.raises(BenchError, match="--set 'protocol"):
            split_sets([bad])
    with pytest.raises(BenchError, match="protocol.backbone is not a mapping"):
        apply_overrides({"backbone": "x"}, {"backbone.model": "RN50"})


def test_overrides_enter_the_identity_only_where_they_decide_results():
    plain = load_protocol("smoke")
    seeded = load_protocol("smoke", {"backbone.seed": 7})
    batch = load_protocol("smoke", {"eval.batch_size": 16})
    assert seeded.identity() != plain.identity() and seeded.identity()["backbone"]["seed"] == 7
    assert batch.identity() == plain.identity() and batch.eval.batch_size == 16  # how it runs, not what
    assert seeded.view()["overrides"] == {"backbone.seed": 7}
    with pytest.raises(ConfigError, match="protocol.backbone.sed: unknown field; did you mean 'seed'"):
        load_protocol("smoke", {"backbone.sed": 7})  # validated like the YAML
    with pytest.raises(ConfigError, match="protocol.eval.batch_size"):
        load_protocol("smoke", {"eval.batch_size": 0})
    cell = load_protocol("b2n_lamp/eurosat/imb10", {"backbone.model": "ViT-B-32"})  # a grid cell
    assert cell.identity()["backbone"]["model"] == "ViT-B-32" and cell.name == "b2n_lamp/eurosat/imb10"


def test_a_backbone_override_runs_and_the_leaderboard_selects_it(capsys, tmp_path):
    results = str(tmp_path / "results")
    common = ["--method", "zeroshot", "--seeds", "1", "--results-dir", results, "--no-progress"]
    assert run(capsys, "run", "--protocol", "smoke", *common)[0] == 0
    code, out, _ = run(capsys, "run", "--protocol", "smoke", *common, "--set", "protocol.backbone.seed=7")
    assert code == 0 and "1 ran" in out  # a new key, not "done before"
    code, out, _ = run(capsys, "run", "--protocol", "smoke", *common, "--set", "protocol.eval.batch_size=7")
    assert code == 0 and "1 done before" in out  # the same results
    assert len(list((tmp_path / "results" / "smoke" / "zeroshot").iterdir())) == 2
    for command in ("plan", "status"):  # the same cells, as bench run would key them
        code, out, _ = run(capsys, command, "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "2",
                           "--results-dir", results, "--set", "protocol.backbone.seed=7")
        assert code == 0 and "| smoke | zeroshot | 1 |" in out, out
    code, out, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", results,
                         "--set", "protocol.backbone.seed=7", "--title")
    assert code == 0 and out.startswith("## smoke (backbone.seed=7)") and "| zeroshot | 1 |" in out
    code, out, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", results, "--all-configs")
    assert "| zeroshot (protocol backbone.seed=7) | 1 |" in out and "| zeroshot | 1 |" in out
    err = one_error(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", results,
                    "--set", "protocol.backbone.seed=8")
    assert "found 2 result(s) of other configurations: 1 with protocol backbone.seed=" in err
    assert "1 with protocol backbone.seed=0" in err and "1 with protocol backbone.seed=7" in err
    assert "run: bench run --protocol smoke --method all --set protocol.backbone.seed=8" in err
    assert "takes protocol fields only" in one_error(capsys, "leaderboard", "--protocol", "smoke", "--set", "coop.n_ctx=2")
    assert "--set takes method fields only" in one_error(capsys, "bench", "--set", "protocol.backbone.model=RN50")


def test_leaderboard_merges_several_results_folders(capsys, tmp_path):
    for seed, folder in ((1, "a"), (2, "b")):
        assert run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", str(seed),
                   "--results-dir", str(tmp_path / folder), "--no-progress")[0] == 0
    code, out, _ = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(tmp_path / "a"),
                       str(tmp_path / "b"))
    assert code == 0 and "| zeroshot | 2 |" in out
    first = next((tmp_path / "a").glob("smoke/zeroshot/*/seed-1.json"))
    copy = tmp_path / "b" / first.relative_to(tmp_path / "a")
    record = json.loads(first.read_text())
    record["metrics"]["all"] = 1.0  # the same cell, other numbers
    copy.write_text(json.dumps(record))
    code, out, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(tmp_path / "a"),
                         str(tmp_path / "b"))
    assert code == 0 and "| zeroshot | 1 |" in out and "left out, conflicting copies: smoke / zeroshot" in err


def test_a_users_grid_file_runs_cell_by_cell(capsys, tmp_path):
    grid = tmp_path / "mine" / "sweep.yaml"
    grid.parent.mkdir()
    grid.write_text(textwrap.dedent("""\
        description: "my imbalance sweep, {imbalance_ratio}"
        family: lt
        dataset: {name: synthetic_lt, num_classes: 6, max_per_class: 30, test_per_class: 5}
        backbone: {name: synthetic_clip, model: bench-tiny-vit, steps: 5}
        seeds: [1]
        grid:
          dataset.imbalance_ratio: {ir5: 5, ir10: 10}
        """))
    cells = match_protocols(str(grid))
    assert cells == [f"{grid}/ir5", f"{grid}/ir10"] and match_protocols(f"{grid}/*10") == [f"{grid}/ir10"]
    assert load_protocol(f"{grid}/ir10").name == "sweep/ir10"
    results = str(tmp_path / "results")
    code, out, err = run(capsys, "run", "--protocol", str(grid), "--method", "zeroshot", "--results-dir", results,
                         "--no-progress")
    assert code == 0 and "2 ran" in out, err
    code, out, _ = run(capsys, "leaderboard", "--protocol", f"{grid}/ir10", "--results-dir", results)
    assert code == 0 and "| zeroshot | 1 |" in out
    code, out, _ = run(capsys, "leaderboard", "--protocol", str(grid), "--results-dir", results)
    assert code == 0 and "| Method | ir5 | ir10 | Mean |" in out
    assert "has no grid cell 'sweep/ir7'" in one_error(capsys, "show", f"{grid}/ir7")
    assert f"bench run --protocol {grid}" in one_error(capsys, "show", str(grid))


@pytest.mark.slow  # a ResNet backbone pretrained
def test_vit_only_methods_are_left_out_on_a_resnet_and_refused_by_name(capsys, tmp_path):
    results = str(tmp_path / "results")
    rn = ["--set", "protocol.backbone.model=bench-tiny-rn", "--set", "protocol.train.epochs=2", "--seeds", "1",
          "--results-dir", results, "--no-progress"]
    code, out, _ = run(capsys, "run", "--protocol", "smoke", "--method", "all", *rn)
    assert code == 0
    left_out = {line.split()[2] for line in out.splitlines() if "vision prompts need an open_clip VisionTransformer" in line}
    assert {"maple", "maple_la", "ivlp", "lamp", "cpt", "global_etf", "mdpr_maple"} <= left_out
    ran = {p.name for p in (tmp_path / "results" / "smoke").iterdir()}
    assert {"zeroshot", "coop", "coop_la", "la_posthoc", "candle", "cocoop", "mdpr_coop_offlinekb"} <= ran
    assert not ran & left_out
    err = one_error(capsys, "run", "--protocol", "smoke", "--method", "maple", *rn)
    assert "maple cannot run on smoke [backbone.model=bench-tiny-rn, train.epochs=2]: its vision prompts need" in err


def test_candle_refuses_a_cross_dataset_target_by_name(capsys, tmp_path):
    err = one_error(capsys, "run", "--protocol", "smoke_xd_dg", "--method", "candle", "--seeds", "1",
                    "--results-dir", str(tmp_path / "r"), "--no-progress")
    assert "candle cannot run on smoke_xd_dg: evaluation 'other_a' (a cross-dataset target)" in err
    assert "trains one Candle per target" in err


def test_random_weights_are_drawn_from_a_recorded_seed():
    from bench.model.backbone import OpenClip, OpenClipConfig

    def weights(**fields):
        torch.manual_seed(len(fields) * 101 + 7)  # a different global state each time
        model = OpenClip.build(OpenClipConfig(model="bench-tiny-vit", pretrained=None, **fields)).model
        return model.token_embedding.weight

    state = torch.random.get_rng_state()
    assert torch.equal(weights(), weights(init_seed=0))
    assert not torch.equal(weights(), weights(init_seed=1))
    assert "init_seed" in load_protocol("smoke_b2n").identity()["backbone"] or True
    with pytest.raises(ConfigError, match="init_seed: seeds random weights only"):
        from bench.core.coerce import from_dict

        from_dict(OpenClipConfig, {"model": "ViT-B-16", "pretrained": "openai", "init_seed": 3}, "protocol.backbone")
    torch.random.set_rng_state(state)


def test_missing_weights_are_one_complete_line(capfd, monkeypatch, tmp_path):
    from bench.model.backbone import create_open_clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BenchError) as info:
        create_open_clip("ViT-B-16", "openai")
    message = str(info.value)
    assert f"not in the Hugging Face cache ({tmp_path / 'hub'})" in message
    assert "--set protocol.backbone.cache_dir=DIR" in message and "(the result key stays the same)" in message
    assert message.endswith("--set protocol.backbone.quick_gelu=true") and "\n" not in message
    assert "ERROR" not in capfd.readouterr().err  # open_clip's own log line is not printed


def test_data_roots_file_places_each_dataset(capsys, tmp_path, monkeypatch):
    roots = tmp_path / "data.yaml"
    roots.write_text("coop: /data/coop-all\neurosat: /fast/eurosat\nplaces_lt: /data/places\n")
    monkeypatch.setenv("BENCH_DATA_ROOTS", str(roots))
    assert load_protocol("places_lt").dataset.root == "/data/places"
    xd = load_protocol("xd_dg_lamp/imb100")
    assert xd.dataset.root == "/data/coop-all"
    targets = {e.plan.name: e.dataset.root for e in xd.evaluations if e.dataset is not None}
    assert targets["eurosat"] == "/fast/eurosat" and targets["dtd"] == "/data/coop-all"
    assert load_protocol("places_lt", {"dataset.root": "/mine"}).dataset.root == "/mine"  # a block's own root wins
    code, out, _ = run(capsys, "data", "list")
    assert f"data roots file: {roots} (read" in out
    assert f"places_lt        not found under /data/places ({roots}: places_lt)" in out
    roots.write_text("places_lt: [1, 2]\n")
    assert "expected a mapping of dataset name to folder" in one_error(capsys, "show", "places_lt")
    monkeypatch.setenv("BENCH_DATA_ROOTS", str(tmp_path / "missing.yaml"))
    assert "does not exist" in one_error(capsys, "data", "list")


def test_report_on_results_of_another_configuration_says_why_it_is_empty(capsys, tmp_path):
    results = str(tmp_path / "results")
    assert run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "coop", "--seeds", "1", "--results-dir",
               results, "--no-progress", "--set", "protocol.backbone.seed=7")[0] == 0
    err = one_error(capsys, "report", "smoke", "--results-dir", results)
    assert "no method has results of the current configuration of smoke; found 2 result(s) of other " \
           "configurations: 2 with protocol backbone.seed=7" in err
    code, out, err = run(capsys, "report", "smoke", "--results-dir", results, "--set", "protocol.backbone.seed=7")
    assert code == 0 and "; synthetic clip bench-tiny-vit)" in out.splitlines()[0]
    spec = tmp_path / "mine.yaml"
    spec.write_text(json.dumps({"title": "Seven ({backbone})", "rows": ["zeroshot", "coop"], "columns": [
        {"protocols": "smoke", "set": {"backbone.seed": 7}, "label": "seed 7"},
        {"protocols": str(tmp_path / "copy.yaml"), "label": "a copy"}]}))
    (tmp_path / "copy.yaml").write_text((load_protocol("smoke").path).read_text())
    code, out, err = run(capsys, "report", str(spec), "--results-dir", results)
    assert code == 0 and out.startswith("## Seven (synthetic clip bench-tiny-vit)") and "seed 7" in out
    # the copy names itself smoke: its column reads the smoke results, and says why none is its configuration
    assert f"{tmp_path / 'copy.yaml'}: no numbers; found 2 result(s) of other configurations: 2 with protocol " \
           "backbone.seed=7" in err


@pytest.mark.parametrize("method", ["coop_la", "cocoop_la", "maple_la", "candle", "lamp"])
def test_lamp_tables_3_4_rows_hold_accuracy_and_macro_f1(method):
    from bench.core.registry import METHODS
    from bench.plugins import load_builtins

    load_builtins()
    numbers = METHODS.get(method).card.reported["xd_dg_lamp/imb100"].metrics
    xd = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
          "sun397", "dtd", "eurosat", "ucf101"]
    for suffix in ("", "_macro_f1"):
        eleven = [numbers[f"{name}{suffix}"] for name in xd]
        # the printed "Avg. (w/o Source)" is the mean of all 11 columns (a check on the transcription)
        assert abs(sum(eleven) / 11 - numbers[f"xd_with_source{suffix}"]) < 0.02, (method, suffix)
        assert numbers[f"imagenet_a{suffix}"] and numbers[f"imagenet_r{suffix}"]


def test_cross_dataset_records_hold_each_evaluations_macro_f1(capsys, tmp_path):
    results = tmp_path / "results"
    assert run(capsys, "run", "--protocol", "smoke_xd_dg", "--method", "zeroshot", "--seeds", "1",
               "--results-dir", str(results), "--no-progress")[0] == 0
    record = json.loads(next(results.glob("smoke_xd_dg/zeroshot/*/seed-1.json")).read_text())
    metrics = record["metrics"]
    assert {"source_macro_f1", "other_a_macro_f1", "xd_mean_macro_f1", "dg_mean_macro_f1"} <= set(metrics)
    targets = [metrics[f"{m}_macro_f1"] for m in ("other_a", "other_b")]
    assert metrics["xd_mean_macro_f1"] == pytest.approx(sum(targets) / 2)
    code, out, _ = run(capsys, "leaderboard", "--protocol", "smoke_xd_dg", "--results-dir", str(results))
    assert "F1" not in out.splitlines()[0]  # leaderboards show accuracy; report specs name the F1s
    assert os.path.isdir(results)


def test_fake_coop_trees_in_two_places_run_a_real_grid_cell_on_a_tiny_backbone(capsys, tmp_path, monkeypatch):
    """The data roots file puts EuroSAT and the other CoOp datasets in different folders, and protocol
    overrides run a shipped b2n_lamp cell on a tiny random-weight backbone: no --data-root, no YAML edit."""
    from test_coop_data import fake_split

    fake_split(monkeypatch, tmp_path / "fast", "eurosat", classes=6, train=12, test=2)
    roots = tmp_path / "data.yaml"
    roots.write_text(f"coop: {tmp_path / 'elsewhere'}\neurosat: {tmp_path / 'fast'}\n")
    monkeypatch.setenv("BENCH_DATA_ROOTS", str(roots))
    code, out, _ = run(capsys, "data", "check", "eurosat")
    assert code == 0 and f"every listed image is under '{tmp_path / 'fast'}'" in out
    tiny = ["--set", "protocol.backbone.model=bench-tiny-vit", "--set", "protocol.backbone.pretrained=null",
            "--set", "protocol.transforms.size=32", "--set", "protocol.eval.batch_size=8", "--set", "protocol.train.num_workers=0"]
    results = str(tmp_path / "results")
    code, out, err = run(capsys, "run", "--protocol", "b2n_lamp/eurosat/imb10", "--method", "zeroshot", "--seeds", "1",
                         "--results-dir", results, "--no-progress", *tiny)
    assert code == 0 and "1 ran" in out, err
    code, out, _ = run(capsys, "leaderboard", "--protocol", "b2n_lamp/eurosat/imb10", "--results-dir", results, *tiny)
    assert code == 0 and "| zeroshot | 1 |" in out
    code, out, err = run(capsys, "report", "lamp_b2n_imb10", "--results-dir", results, *tiny)
    assert code == 2 and err.endswith("(results of the spec's extra rows are shown with --rows all)\n")
    code, out, err = run(capsys, "report", "lamp_b2n_imb10", "--rows", "all", "--results-dir", results, *tiny)
    assert code == 0 and "| Zero-shot CLIP " in out
    assert out.startswith("## Long-tailed base-to-new, imbalance 10 (LAMP Table 1; bench-tiny-vit, random weights)")
    assert "coop_la" not in err  # rows without results are incomplete, not an error
