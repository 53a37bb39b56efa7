import json
import textwrap
import subprocess
import sys

import pytest
import torch
import yaml

import bench.engine.runner
import bench.engine.usage
from bench.cli import main
from bench.cli.common import parse_overrides
from bench.config.protocol import load_protocol
from bench.core.errors import BenchError


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


def test_list(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in ("coop", "zeroshot", "smoke", "cifar100_lt_ir100", "synthetic_lt", "open_clip"):
        assert name in out
    code, out, _ = run(capsys, "list", "methods")
    assert out.startswith("methods:\n") and "protocols:" not in out
    lines = out.splitlines()
    maple = next(i for i, line in enumerate(lines) if line.split()[0] == "maple")
    assert "MaPLe: coupled deep prompts" in lines[maple]
    assert lines[maple + 1].split()[0] == "paper:" and "MaPLe: Multi-modal Prompt Learning. CVPR 2023" in lines[maple + 1]
    assert any(line.split()[0] == "<method>@la_posthoc" for line in lines)
    code, out, _ = run(capsys, "list", "reports")  # the specs bench report lays out
    assert code == 0 and out.startswith("reports:\n")
    assert "  mdpr_cifar100_lt      CIFAR-100-LT (MDPR Table 2)  (bench report mdpr_cifar100_lt)" in out.splitlines()


def test_smoke_leaderboard_end_to_end(capsys, results):
    """Records, skipping and the table for a few methods (every method runs in the README's smoke
    command, tests/test_readme.py, and in tests/test_every_method.py)."""
    methods = ["coop", "coop_la", "zeroshot"]
    code, out, err = run(capsys, "run", "--protocol", "smoke", "--method", *methods, "--seeds", "1", "2",
                         "--results-dir", str(results), "--no-progress")
    assert code == 0, err
    files = sorted(results.glob("smoke/*/*/seed-*.json"))
    assert [f.parent.parent.name for f in files] == [m for m in methods for _ in (1, 2)]
    files = [f for f in files if f.parent.parent.name in ("coop", "zeroshot")]
    rec = json.loads(files[0].read_text())
    assert rec["protocol"] == "smoke" and rec["method"] == "coop" and rec["seed"] == 1
    assert set(rec["metrics"]) == {"all", "many", "medium", "few", "macro_f1"}
    assert len(rec["per_class_accuracy"]) == 10
    assert rec["class_train_counts"] == [150, 102, 70, 48, 33, 22, 15, 10, 7, 5]  # the long-tail curve's x
    assert rec["config"]["method"]["n_ctx"] == 4
    assert rec["config"]["train"]["optimizer"] == "adamw" and rec["config"]["train"]["epochs"] == 4
    assert rec["config"]["sources"]["train.lr"] == "card: MDPR App. A.1.2"
    assert rec["train"]["epochs"] == 4
    # what it cost: each epoch's wall time, training and evaluation images/s, peak memory (RSS on a CPU)
    assert len(rec["train"]["epoch_seconds"]) == 4 and rec["train"]["images_per_second"] > 0
    assert rec["usage"]["eval_images_per_second"] > 0 and rec["usage"]["peak_memory_mb"] > 0
    assert rec["usage"]["memory_measure"] == ("cuda max allocated (this cell)" if torch.cuda.is_available()
                                              else "process max RSS")
    setup = rec["setup"]
    assert setup["activation"] == "gelu" and setup["image_size"] == 32 and setup["group_by"] == "own"
    assert setup["precision"] == ({"train": "fp32", "eval": "fp32"} if not torch.cuda.is_available()
                                  else {"train": "bf16-autocast", "eval": "bf16-autocast"})
    assert setup["transforms"]["train"][1].startswith("RandomResizedCrop(size=(32, 32), scale=(0.08, 1.0)")
    assert setup["transforms"]["test"][1].startswith("Resize(size=32, interpolation=bicubic")
    zs = json.loads(files[2].read_text())
    assert zs["config"]["train"] == {"eval_precision": "amp", "num_workers": None, "feature_cache": 0}
    assert zs["setup"]["loader_workers"] == 0  # none on a CPU
    assert zs["setup"]["transforms"]["train"] is None
    assert zs["config"]["method"]["templates"] == ["a photo of a {}."]
    assert rec["env"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    assert files[0].with_suffix(".ckpt").exists()

    # Re-running skips finished cells and changes nothing.
    before = {f: f.read_text() for f in files}
    code, out, _ = run(capsys, "run", "--protocol", "smoke", "--method", "coop", "zeroshot", "--seeds", "1", "2",
                       "--results-dir", str(results))
    assert code == 0 and out.count("done already, skipped") == 4
    assert {f: f.read_text() for f in files} == before

    code, out, _ = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(results),
                       "--output", str(results / "smoke.md"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "| Method | Seeds | All | Many | Medium | Few | Macro-F1 |"
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert set(rows) == set(methods)
    assert all(" ± " in rows[m] and "| 2 |" in rows[m] for m in rows)
    assert (results / "smoke.md").read_text() == out
    # CoOp (and CoOp+LA) learn on top of zero-shot CLIP.
    acc = {m: float(rows[m].split(" | ")[2].split(" ")[0]) for m in rows}
    assert acc["coop"] > acc["zeroshot"] and acc["coop_la"] > acc["zeroshot"]


def test_changed_config_is_a_new_cell(capsys, results):
    args = ["run", "--protocol", "smoke", "--method", "coop", "--seeds", "1", "--results-dir", str(results)]
    assert run(capsys, *args)[0] == 0
    assert run(capsys, *args, "--set", "coop.n_ctx=2")[0] == 0
    assert len({f.parent for f in results.glob("smoke/coop/*/seed-1.json")}) == 2
    code, out, _ = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(results))
    assert [line.split(" | ")[0] for line in out.splitlines()[2:]] in (["| coop", "| coop (n_ctx=2)"],
                                                                       ["| coop (n_ctx=2)", "| coop"])


def test_leaderboard_shows_only_the_current_protocol_config(capsys, results, tmp_path):
    """Another YAML also named 'smoke' must not top the table of the real one."""
    other = tmp_path / "smoke.yaml"
    other.write_text(yaml.safe_dump({**yaml.safe_load(load_protocol("smoke").path.read_text()),
                                     "eval": {"few_threshold": 10}}))
    run_args = ["run", "--method", "zeroshot", "--seeds", "1", "--results-dir", str(results)]
    assert run(capsys, *run_args, "--protocol", "smoke")[0] == 0
    assert run(capsys, *run_args, "--protocol", str(other))[0] == 0
    code, out, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(results))
    assert code == 0 and [line.split(" | ")[0] for line in out.splitlines()[2:]] == ["| zeroshot"]
    assert "1 result(s) of other configurations or code versions of 'smoke' are not shown" in err
    code, out, _ = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(results), "--all-configs")
    labels = sorted(line.split(" | ")[0] for line in out.splitlines()[2:])
    assert labels == ["| zeroshot", "| zeroshot (protocol eval.few_threshold=10)"]
    code, _, err = run(capsys, "leaderboard", "--protocol", str(tmp_path / "nothing.yaml"), "--results-dir",
                       str(results))
    assert code == 2


def test_interrupted_run_resumes_from_checkpoint(capsys, results, tmp_path, monkeypatch):
    real_train = bench.engine.runner.train

    def interrupted(*args, **kwargs):
        real_train(*args, **kwargs, stop_after=2)
        raise KeyboardInterrupt

    args = ["run", "--protocol", "smoke", "--method", "coop", "--seeds", "3", "--no-progress"]
    monkeypatch.setattr(bench.engine.runner, "train", interrupted)
    code, _, err = run(capsys, *args, "--results-dir", str(results))
    assert code == 130 and "re-run resumes" in err
    assert not list(results.rglob("*.json")) and len(list(results.rglob("seed-3.ckpt"))) == 1
    monkeypatch.setattr(bench.engine.runner, "train", real_train)

    assert run(capsys, *args, "--results-dir", str(results))[0] == 0
    resumed = json.loads(next(results.rglob("seed-3.json")).read_text())
    assert resumed["train"]["resumed_from_epoch"] == 2
    assert run(capsys, *args, "--results-dir", str(tmp_path / "straight"))[0] == 0
    straight = json.loads(next((tmp_path / "straight").rglob("seed-3.json")).read_text())
    assert straight["train"]["resumed_from_epoch"] is None
    assert resumed["metrics"] == straight["metrics"] and resumed["per_class_accuracy"] == straight["per_class_accuracy"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "--protocol", "smoke", "--method", "cop"], "unknown method 'cop'; did you mean 'coop'?"),
        (["run", "--protocol", "smok", "--method", "coop"], "unknown protocol 'smok'; did you mean 'smoke'?"),
        (["run", "--protocol", "smoke", "--method", "coop", "--set", "coop.nctx=2"], "did you mean 'n_ctx'?"),
        (["run", "--protocol", "smoke", "--method", "coop", "--set", "n_ctx=2"], "expected METHOD.FIELD=VALUE"),
        (["run", "--protocol", "smoke", "--method", "coop", "--set", "coop.optim.lr=2"], "METHOD.train.FIELD"),
        (["run", "--protocol", "smoke", "--method", "coop", "--set", "coop.train.lr=fast"],
         "--set coop.train.lr: expected a number, got 'fast'"),
        (["run", "--protocol", "smoke", "--method", "zeroshot", "--set", "zeroshot.train.lr=1"], "is not trained"),
        (["run", "--protocol", "smoke", "--method", "coop", "--set", "zeroshot.templates=[]"], "not being run"),
        (["run", "--protocol", "smoke", "--method", "coop", "--data-root", "/x"], "reads no files"),
        (["run", "--protocol", "smoke", "--method", "coop", "--seeds", "-1"], "argument --seeds: expected a whole number from 0 to 4294967295, got '-1'"),
        (["run", "--protocol", "smoke", "--method", "coop", "--seeds", str(2**63)], "a whole number from 0 to"),
        (["leaderboard", "--protocol", "cifar100_lt_ir10"], "no results for protocol"),
        (["leaderboard", "--protocol", "smoke", "--digits", "-1"], "expected a whole number from 0 to 10, got '-1'"),
        (["run", "--protocol", "smoke", "--method", "coop", "--device", "mps"], "expected auto, cpu, cuda or cuda:N"),
        (["run", "--protocol", "smoke", "--method", "coop", "--device", "meta"], "expected auto, cpu, cuda or cuda:N"),
        (["run", "--protocol", "smoke", "--method", "coop", "--device", "gpu"], "expected auto, cpu, cuda or cuda:N"),
        # options that do not fit the model fail before the first cell
        (["run", "--protocol", "smoke", "--method", "maple", "--set", "maple.depth=3"],
         "method maple.depth: must be between 1 and 2, the number of layers"),
        (["run", "--protocol", "smoke", "--method", "ivlp", "--set", "ivlp.n_ctx_text=40", "--set",
          "ivlp.init_text=null"],
         "method ivlp.n_ctx_text: prompts need"),
        (["run", "--protocol", "smoke", "--method", "candle", "--set", "candle.heads=7"], "must divide the embedding"),
        (["run", "--protocol", "smoke_b2n", "--method", "coop", "--set", "coop.csc=true", "--set",
          "coop.init_text=null"],
         "class-specific context (csc) is learned per training class and cannot classify classes it was not trained on"),
        (["run", "--protocol", "smoke", "--method", "coop@la_postoc"], "unknown method variant 'la_postoc'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, results, argv, fragment):
    code, _, err = run(capsys, *argv, "--results-dir", str(results))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("bench: error: ")
    assert fragment in err


def test_malformed_yaml_and_missing_root(capsys, tmp_path, results):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndataset: [unclosed\n")
    code, _, err = run(capsys, "run", "--protocol", str(bad), "--method", "coop", "--results-dir", str(results))
    assert code == 2 and "malformed YAML at line" in err and err.count("\n") == 1

    proto = tmp_path / "cifar.yaml"
    proto.write_text(
        "name: cifar\nfamily: lt\ndataset: {name: cifar100_lt, imbalance_ratio: 10, root: /no/such/dir, download: false}\n"
        "backbone: {name: open_clip, model: bench-tiny-vit, pretrained: null}\n"
    )
    code, _, err = run(capsys, "run", "--protocol", str(proto), "--method", "zeroshot", "--results-dir", str(results))
    assert code == 2 and "dataset root '/no/such/dir' does not exist" in err and err.count("\n") == 1


def test_error_after_finished_cells_keeps_them(capsys, results):
    args = ["run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "--results-dir", str(results)]
    assert run(capsys, *args)[0] == 0
    saved = next(results.rglob("seed-1.json"))
    text = saved.read_text()
    code, _, err = run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "coop", "--seeds", "1",
                       "--set", "coop.n_ctx=40", "--results-dir", str(results))
    assert code == 2 and "prompts need" in err
    assert saved.read_text() == text


@pytest.mark.slow  # bench processes
def test_argparse_errors_are_one_line():
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--method", "coop"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--protocol" in proc.stderr


@pytest.mark.slow  # a bench process
def test_console_entry_point_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--protocol", "smoke", "--method", "coopp", "--results-dir", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    from bench.core.registry import METHODS
    from bench.plugins import load_builtins

    load_builtins()  # the registry is empty until the methods are imported (run alone, this test imports none)
    names = ", ".join(METHODS.names())
    assert proc.stderr == f"bench: error: unknown method 'coopp'; did you mean 'coop'? (available: {names})\n"


def test_parse_overrides():
    assert parse_overrides(["coop.n_ctx=4", "coop.init_text=a photo of a", "coop.csc=true"]) == {
        "coop": {"n_ctx": 4, "init_text": "a photo of a", "csc": True}
    }
    with pytest.raises(BenchError):
        parse_overrides(["coop.n_ctx"])


def test_train_override_is_a_new_cell_with_that_lr(capsys, results):
    args = ["run", "--protocol", "smoke", "--method", "coop", "--seeds", "1", "--results-dir", str(results),
            "--no-progress", "--set", "coop.train.epochs=1"]
    assert run(capsys, *args)[0] == 0
    assert run(capsys, *args, "--set", "coop.train.lr=0.01")[0] == 0
    recs = [json.loads(f.read_text()) for f in results.glob("smoke/coop/*/seed-1.json")]
    assert sorted(r["config"]["train"]["lr"] for r in recs) == [0.001, 0.01]
    assert {r["config"]["sources"]["train.lr"] for r in recs} == {"card: MDPR App. A.1.2", "--set"}


def test_parse_overrides_nests_train_fields():
    assert parse_overrides(["coop.n_ctx=4", "coop.train.lr=0.01", "coop.train.optimizer=sgd"]) == \
        {"coop": {"n_ctx": 4, "train": {"lr": 0.01, "optimizer": "sgd"}}}


def test_show_prints_every_resolved_field_with_its_source(capsys):
    code, out, _ = run(capsys, "show", "cifar100_lt_ir100", "--set", "coop.train.lr=0.01")
    assert code == 0
    assert "backbone    open_clip  model=ViT-B-16 pretrained=openai" in out and "activation quick_gelu" in out
    assert "Resize(size=224, interpolation=bicubic" in out and "RandomCrop(size=(224, 224), padding=4)" in out
    assert "RandomHorizontalFlip(p=0.5)" in out
    coop = out.split("\ncoop: ")[1].split("\n\n")[0]
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in coop.splitlines()[4:]}
    assert rows["train.lr"] == ["0.01", "--set"]
    assert rows["train.optimizer"] == ["'adamw'", "card: MDPR App. A.1.2"]
    assert rows["train.momentum"] == ["0.9", "default"]
    assert rows["train.num_workers"] == ["4", "protocol train"]
    assert rows["n_ctx"] == ["None", "card: MDPR App. A.1.2"]
    assert "reported    MDPR Table 2: all 64.34" in coop
    assert "training    none" in out.split("\nzeroshot: ")[1]
    code, _, err = run(capsys, "show", "smoke", "--method", "cop")
    assert code == 2 and err.count("\n") == 1 and "unknown method 'cop'; did you mean 'coop'?" in err


def test_seeds_decide_the_initial_prompt(tmp_path, monkeypatch):
    """Building shared things (backbone, data) must not reseed the cell's RNG."""
    from bench.config.protocol import load_protocol
    from bench.engine.runner import RunOptions, Runner

    initial = {}

    def capture(method, dataset, recipe, seed, *args, **kwargs):
        initial.setdefault(seed, []).append(method.prompt_learner.ctx.detach().clone())
        return {"epochs": 0, "loss_history": [], "resumed_from_epoch": None}

    monkeypatch.setattr(bench.engine.runner, "train", capture)
    for run_dir in ("a", "b"):  # two runs: a fresh backbone each time
        runner = Runner(load_protocol("smoke"), RunOptions(results_dir=tmp_path / run_dir, device="cpu"), log=lambda m: None)
        runner.run(["coop"], [1, 2])
    (s1a, s1b), (s2a, s2b) = initial[1], initial[2]
    assert torch.equal(s1a, s1b) and torch.equal(s2a, s2b)
    assert not torch.allclose(s1a, s2a)


def test_results_dir_problems_are_found_before_any_work(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(bench.engine.runner.Runner, "run_cell", lambda *a: pytest.fail("ran a cell"))
    afile = tmp_path / "file"
    afile.write_text("x")
    for bad in (str(afile), str(afile / "below"), "", "  "):
        code, _, err = run(capsys, "run", "--protocol", "smoke", "--method", "coop", "--results-dir", bad)
        assert code == 2 and err.count("\n") == 1 and "--results-dir" in err, err


def test_leaderboard_output_problems_are_one_line(capsys, results, tmp_path):
    assert run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1",
               "--results-dir", str(results))[0] == 0
    afile = tmp_path / "file"
    afile.write_text("x")
    for out, fragment in ((tmp_path, "is a folder"), (afile / "t.md", "cannot write it")):
        code, _, err = run(capsys, "leaderboard", "--protocol", "smoke", "--results-dir", str(results),
                           "--output", str(out))
        assert code == 2 and err.count("\n") == 1 and fragment in err, err


def test_whole_plan_is_checked_before_the_first_cell(capsys, results, tmp_path):
    """A bad option of a later method fails before any cell runs (tokens are counted by building it)."""
    args = ["run", "--protocol", "smoke", "--seeds", "1", "--results-dir", str(results), "--method", "zeroshot", "coop"]
    code, _, err = run(capsys, *args, "--set", "coop.init_text=a photo of the big")
    assert code == 2 and "n_ctx: is 4 but init_text 'a photo of the big' has 5 tokens" in err
    assert not list(results.rglob("seed-1.json"))  # zeroshot, first in line, did not run either


def test_keys_ignore_settings_that_cannot_act(tmp_path):
    from bench.config.protocol import load_protocol
    from bench.engine.runner import RunOptions, Runner

    runner = Runner(load_protocol("smoke"), RunOptions(results_dir=tmp_path, device="cpu"), log=lambda m: None)
    key = lambda **train: runner.plan(["coop"], [1])[0].key if not train else \
        Runner(runner.protocol, RunOptions(results_dir=tmp_path, device="cpu", overrides={"coop": {"train": train}}),
               log=lambda m: None).plan(["coop"], [1])[0].key  # noqa: E731
    assert key(momentum=0.5) == key()  # the lt card trains CoOp with AdamW
    assert key(warmup_lr=1e-3) == key()  # no warm-up epochs
    assert key(precision="fp32") == key()  # "amp" is fp32 on a CPU
    assert key(lr=0.01) != key()


def test_runner_groups_by_the_reference_profile(capsys, results, tmp_path):
    proto = tmp_path / "hundred.yaml"
    proto.write_text(textwrap.dedent("""\
        family: lt
        dataset: {name: synthetic_lt, num_classes: 100, max_per_class: 500, imbalance_ratio: 10,
                  test_per_class: 1, image_size: 32}
        backbone: {name: synthetic_clip, steps: 60}
        eval: {group_by: cifar100_lt_ir100}
        seeds: [1]
        """))
    assert run(capsys, "run", "--protocol", str(proto), "--method", "zeroshot", "--results-dir", str(results))[0] == 0
    rec = json.loads(next(results.rglob("seed-1.json")).read_text())
    assert rec["group_sizes"] == {"many": 35, "medium": 35, "few": 30}  # IR10's own would be 69 / 31 / 0
    assert rec["setup"]["group_by"] == "cifar100_lt_ir100" and rec["metrics"]["few"] is not None


def test_off_a_terminal_each_epoch_is_a_line_and_threads_are_set(capsys, results):
    code, out, _ = run(capsys, "run", "--protocol", "smoke", "--method", "coop", "--seeds", "1",
                       "--results-dir", str(results), "--threads", "1", "--set", "coop.train.epochs=2")
    assert code == 0
    epochs = [line for line in out.splitlines() if ": epoch " in line]
    assert [line.split(": epoch ")[1].split(":")[0] for line in epochs] == ["1/2", "2/2"]
    assert epochs[0].startswith("[1/1] smoke / coop / seed 1: epoch 1/2: loss ") and ", lr 0.001, " in epochs[0]
    assert json.loads(next(results.rglob("seed-1.json")).read_text())["env"]["threads"] == 1
    code, _, err = run(capsys, "run", "--protocol", "smoke", "--method", "coop", "--threads", "0")
    assert code == 2 and "expected a whole number from 1 to 1024" in err


def test_default_threads_leave_a_core_free(monkeypatch):
    from bench.engine.usage import default_threads

    for cpus, threads in ((1, 1), (2, 1), (16, 15)):
        monkeypatch.setattr(bench.engine.usage.os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)))
        assert default_threads() == threads


def test_data_root_is_checked_when_every_cell_is_done(capsys, results):
    args = ["run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "--results-dir", str(results)]
    assert run(capsys, *args)[0] == 0
    code, out, err = run(capsys, *args, "--data-root", "/no/such/dir")
    assert code == 2 and "--data-root: dataset 'synthetic_lt' reads no files" in err and "skipped" not in out


def test_output_never_replaces_devices_links_or_results(capsys, results, tmp_path):
    import os

    assert run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1",
               "--results-dir", str(results))[0] == 0
    board = ["leaderboard", "--protocol", "smoke", "--results-dir", str(results)]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = next(results.rglob("seed-1.json"))
    for out, fragment in ((fifo, "is not a regular file"), (result, "would replace a result or checkpoint"),
                          (tmp_path / ("a" * 300), "cannot write it"), ("", "must not be empty")):
        code, _, err = run(capsys, *board, "--output", str(out))
        assert code == 2 and err.count("\n") == 1 and fragment in err, err
    target = tmp_path / "table.md"
    target.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    assert run(capsys, *board, "--output", str(link))[0] == 0
    assert link.is_symlink() and target.read_text().startswith("| Method |")  # written through the link


@pytest.mark.parametrize("argv, fragment", [
    (["--threads", "100000"], "from 1 to 1024"),
    (["--threads", "99999999999999999999"], "from 1 to 1024"),
    (["--set", "coop.train.num_workers=1000000"], "must be at most 64"),
    (["--set", "coop.train.lr=1e39"], "must be at most 1000.0"),
    (["--set", "coop.train.batch_size=100000000000000000000"], "at most"),
    (["--set", "coop.init_text=" + "[" * 1000], "nested more than 100 levels deep"),
])
def test_extreme_values_are_refused_before_work(capsys, results, argv, fragment):
    code, _, err = run(capsys, "run", "--protocol", "smoke", "--method", "coop", "--seeds", "1",
                       "--results-dir", str(results), *argv)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert not results.exists() or not list(results.rglob("*.json"))


def test_a_file_where_the_protocol_folder_goes_fails_before_work(capsys, results, monkeypatch):
    monkeypatch.setattr(bench.engine.runner.Runner, "run_cell", lambda *a: pytest.fail("ran a cell"))
    results.mkdir()
    (results / "smoke").write_text("x")
    code, _, err = run(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "--results-dir", str(results))
    assert code == 2 and "cannot write results under" in err


def report_spec(tmp_path, rows, **fields) -> str:
    """A report spec on the smoke protocol, seed 1: ``rows`` (and ``fields``) as given."""
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"title": "T", "columns": ["smoke"], "metrics": ["all"], "seeds": [1],
                                    "rows": rows, **fields}))
    return str(path)


def test_report_selection_errors_name_the_spec_and_its_rows(capsys, results, tmp_path):
    def error(*argv) -> str:
        code, _, err = run(capsys, *argv, "--results-dir", str(results))
        assert code == 2 and err.startswith("bench: error: ") and err.count("\n") == 1, err
        return err

    assert "--rows needs --report" in error("plan", "--protocol", "smoke", "--rows", "all")
    spec = report_spec(tmp_path, [{"method": "npt"}])
    assert f"report '{spec}': every row is reported only" in error("run", "--report", spec)
    assert "nothing to run" in error("plan", "--report", spec)
    spec = report_spec(tmp_path, ["zeroshot", {"method": "coop", "label": "Wide", "set": {"nonexistent": 1}}])
    assert f"report '{spec}', row 'Wide': --set coop.nonexistent: unknown field" in error("plan", "--report", spec)
    spec = report_spec(tmp_path, ["zeroshot", {"method": "coop", "label": "Deep", "set": {"a.b": 1}}])
    assert f"report '{spec}', row 'Deep': --set 'coop.a.b=1': expected METHOD.FIELD=VALUE" in error(
        "run", "--report", spec)
    spec = report_spec(tmp_path, [{"method": "coop", "label": "One", "set": {"train.epochs": 0}},
                                  {"method": "coop", "label": "Two", "set": {"train.epochs": 0}}])
    assert f"report '{spec}', rows 'One', 'Two': " in error("plan", "--report", spec)  # one setting of two rows


@pytest.mark.parametrize("item", ["coop.n_ctx=8", "coop.train.lr=0.1", "coop.nonexistent=1"])
def test_with_report_set_takes_only_method_fields_outside_the_key(capsys, results, tmp_path, item):
    spec = report_spec(tmp_path, [{"method": "coop", "set": {"train.epochs": 1}}])
    code, _, err = run(capsys, "run", "--report", spec, "--set", item, "--results-dir", str(results))
    assert code == 2 and err.count("\n") == 1 and not results.exists()
    assert f"bench: error: --set {item.partition('=')[0]}: with --report the spec's rows set the method's " in err
    assert "(fields outside the key, such as coop.train.num_workers, are allowed)" in err
    code, out, err = run(capsys, "plan", "--report", spec, "--set", "coop.train.num_workers=0",
                         "--set", "protocol.eval.batch_size=64", "--results-dir", str(results))
    assert code == 0 and "| smoke | coop | 0 | 0 | 0 | 0 | 1 |" in out, err
    code, _, err = run(capsys, "run", "--report", spec, "--feature-cache", "2", "--results-dir", str(results))
    assert code == 2 and "--feature-cache makes cells of their own" in err and not results.exists()


def test_rows_all_adds_a_specs_extra_rows_to_its_run(capsys, results, tmp_path):
    spec = report_spec(tmp_path, ["zeroshot"], extra_rows=["coop"])
    for rows, methods in ((["--rows", "paper"], ["zeroshot"]), ([], ["zeroshot"]),
                          (["--rows", "all"], ["zeroshot", "coop"])):
        code, out, err = run(capsys, "plan", "--report", spec, *rows, "--results-dir", str(results))
        assert code == 0, err
        assert [m for m in ("zeroshot", "coop") if f"| smoke | {m} |" in out] == methods
