"""The README's set-up commands are the ones CI and users run."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def setup_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    smoke, tests = setup_commands()
    assert "\n" not in smoke and "\n" not in tests
    assert smoke.startswith("pip install") and "bench run --protocol smoke" in smoke
    assert "bench leaderboard --protocol smoke" in smoke
    assert tests.startswith("pip install") and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


@pytest.mark.slow  # the whole smoke leaderboard
def test_readme_smoke_command_runs_as_written(tmp_path, bench_cache):
    """Everything after the install, run by a shell in a fresh folder, as a user would."""
    import os
    import subprocess

    smoke, _ = setup_commands()
    install, rest = smoke.split(" && ", 1)
    assert install == "pip install -e ."  # the install itself is what CI's own install step does
    env = {**os.environ, "BENCH_CACHE": str(bench_cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(["bash", "-c", rest], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == "| Method | Seeds | All | Many | Medium | Few | Macro-F1 |"
    from bench.plugins import load_builtins
    from bench.core.registry import METHODS

    load_builtins()  # the registry is empty until the methods are imported (alone, this test imports none)
    needs_a_file = {"mdpr_coop", "mdpr_maple"}  # left out of --method all with a note: their KB file is the user's
    assert sorted(line.split(" | ")[0] for line in table[1:]) == [f"| {m}" for m in METHODS.names()
                                                                  if m not in needs_a_file]
    assert all("| 3 | " in line and " ± " in line for line in table[1:])  # the protocol's three seeds
    assert len(list((tmp_path / "results" / "smoke").rglob("seed-*.json"))) == 3 * (len(METHODS) - len(needs_a_file))


@pytest.mark.slow  # a bench process per command
@pytest.mark.parametrize("argv", [
    ["list", "things"],
    ["show", "smok"],
    ["show", "smoke", "--set", "coop.nctx=1"],
    ["run", "--protocol", "smoke", "--method", "coop", "--set", "coop.train.lr=.nan"],
    ["run", "--protocol", "smoke"],
    ["leaderboard", "--protocol", "smoke", "--digits", "x"],
    ["leaderboard", "--protocol", "nowhere.yaml"],
    ["report", "leaderbord"],
    ["frobnicate"],
])
def test_bad_input_promise_holds_for_every_command(argv, tmp_path):
    """README: one `bench: error:` line, exit code 2, for every command (run as a process)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bench", *argv, *(["--results-dir", str(tmp_path)]
                           if argv[0] in ("run", "leaderboard") else [])],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("bench: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""


def test_setup_says_what_comes_before_the_install():
    """Before `pip install -e .`: the Python pyproject.toml requires, a virtual environment, and the CPU-only
    torch wheels in the range pyproject.toml allows, a range (not a pin) that holds the torch tested here."""
    import shlex
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    section = (ROOT / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    before, after = section.split("pip install -e .", 1)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"Python {project['requires-python'].removeprefix('>=')} or newer" in before
    assert "python3 -m venv .venv && source .venv/bin/activate" in before
    cpu = re.search(r"`(pip install [^`]*--index-url https://download\.pytorch\.org/whl/cpu)`", before)
    asked = {r.name: r.specifier for r in map(Requirement, shlex.split(cpu.group(1))[2:-2])}
    required = {r.name: r.specifier for r in map(Requirement, project["dependencies"])}
    for name in ("torch", "torchvision"):
        assert asked[name] == required[name] and "==" not in str(required[name])
        assert version(name) in required[name]
    assert "minutes on 2 cores" in after


def test_readme_plan_for_a_gpu_runs_on_a_machine_without_one(tmp_path, capsys, monkeypatch):
    """`bench plan ... --device cuda` as the README writes it: keys only, no GPU needed (here there is none)."""
    import shlex

    from bench.cli import main

    line = re.search(r"^bench plan [^#\n]*--device cuda[^#\n]*", (ROOT / "README.md").read_text(), flags=re.M)
    monkeypatch.chdir(tmp_path)  # an empty results folder: every cell to do
    assert main(shlex.split(line.group(0))[1:]) == 0
    out, err = capsys.readouterr()
    assert "| all |" in out and "estimate: no comparable timing" in out and "error" not in err


def adding_a_method() -> str:
    return (ROOT / "README.md").read_text().split("### Adding a method", 1)[1].split("\n## ", 1)[0]


def test_adding_a_method_lists_every_train_recipe_field_with_its_default():
    """The README's TrainRecipe table is the class's fields, in order, with their defaults: it cannot go stale."""
    import dataclasses

    from bench.config.recipes import TrainRecipe

    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \| ", adding_a_method(), flags=re.M)
    assert rows == [(f.name, repr(f.default)) for f in dataclasses.fields(TrainRecipe)]


def test_adding_a_method_names_every_hook_and_setting_of_the_method_contract():
    """A method author reads the contract in the README, not in bench/model/method.py: every public name a
    method may set or override is named there (the engine's own helpers are not)."""
    from bench.model.method import Method

    engine_side = {"features_given", "registry_name", "one_label_space", "use_label_space", "trainable_state",
                   "load_trainable_state"}
    page = adding_a_method()
    public = {name for name in vars(Method) if not name.startswith("_")} - engine_side
    assert sorted(name for name in public | {"depends_on", "load_stage"} if f"`{name}" not in page) == []
    words = " ".join(page.split())
    assert "backbone.device" in words and "backbone.embed_dim" in words and "before the optimizer is built" in words
    import inspect

    from bench.config.cards import MethodCard

    assert "shared/docs" not in inspect.getsource(MethodCard)  # a folder a method author does not have
