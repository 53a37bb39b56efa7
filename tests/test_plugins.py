"""Methods from outside the package: a plugin file (--plugin, $BENCH_PLUGINS), an installed package's
entry point, `bench new method`; their origin in `bench list` and in records, their code in the key,
and one `bench: error:` line for each way a plugin can be wrong."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(new_process):
    """Every test here loads plugins: the registries are put back after each (conftest's new_process)."""
    yield


def new_method(folder: Path, name: str) -> Path:
    assert main(["new", "method", name, "--dir", str(folder)]) == 0
    return folder / f"{name}.py"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith("bench: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.slow  # runs pytest in a process
def test_bench_new_method_writes_a_method_and_a_test_that_pass_as_written(tmp_path, capsys):
    new_method(tmp_path / "mine", "my_adapter")
    spec = importlib.util.spec_from_file_location("test_my_adapter", tmp_path / "mine" / "test_my_adapter.py")
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    capsys.readouterr()
    generated.test_my_adapter_runs_on_the_smoke_protocol_and_is_on_the_leaderboard(tmp_path / "run", capsys)
    source = (tmp_path / "mine" / "my_adapter.py").read_text()
    for part in ("class MyAdapterConfig", "CARD = MethodCard(", "paper=", "code=", "recipes=", "reported=",
                 "def forward(", "def set_label_space(", "# def prepare(", "# def loss(", "# def adapt_to_new("):
        assert part in source
    assert "exists already" in one_error(capsys, "new", "method", "my_adapter", "--dir", str(tmp_path / "mine"))
    assert "built-in method" in one_error(capsys, "new", "method", "coop", "--dir", str(tmp_path))
    assert "lower-case letters" in one_error(capsys, "new", "method", "My-Method", "--dir", str(tmp_path))


@pytest.mark.slow  # bench processes
def test_a_plugin_file_runs_from_another_folder_is_listed_reported_and_keyed_by_its_code(tmp_path, capsys,
                                                                                          monkeypatch, new_process):
    plugin = new_method(tmp_path / "code", "my_adapter")
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    spec = os.path.relpath(plugin, work)  # as a user types it: ../code/my_adapter.py
    argv = ["--plugin", spec, "--protocol", "smoke", "--method", "my_adapter", "--seeds", "1"]
    assert run(capsys, "run", *argv)[0] == 0
    first, = (work / "results" / "smoke" / "my_adapter").glob("*/seed-1.json")
    record = json.loads(first.read_text())
    assert record["origin"]["from"] == "plugin" and record["origin"]["plugin"] == spec
    assert record["code_version"].startswith("0.") and "+plugin." in record["code_version"]
    code, out, _ = run(capsys, "list", "methods", "--plugin", spec)
    assert code == 0 and re.search(rf"\n  my_adapter +plugin {re.escape(spec)} +my_adapter: a residual adapter", out)
    assert re.search(r"\n  coop +built-in +CoOp:", out)
    code, out, _ = run(capsys, "leaderboard", "--plugin", spec, "--protocol", "smoke")
    assert code == 0 and "| my_adapter | 1 | " in out
    # an edit to the plugin is new code: a new cell, and the old result is no longer current
    plugin.write_text(plugin.read_text().replace("ratio: float = 0.2", "ratio: float = 0.2  # edited"))
    new_process()
    assert run(capsys, "run", *argv)[0] == 0
    assert len(list((work / "results" / "smoke" / "my_adapter").glob("*/seed-1.json"))) == 2
    code, out, err = run(capsys, "leaderboard", "--plugin", spec, "--protocol", "smoke")
    assert out.count("| my_adapter") == 1 and "1 result(s) of other configurations" in err
    code, out, _ = run(capsys, "leaderboard", "--plugin", spec, "--protocol", "smoke", "--all-configs")
    assert f"| my_adapter (code {record['code_version']}) | 1 |" in out


def test_bench_plugins_names_plugins_for_every_command(tmp_path, capsys, monkeypatch):
    plugin = new_method(tmp_path, "env_adapter")
    monkeypatch.setenv("BENCH_PLUGINS", f"{plugin}{os.pathsep}")
    code, out, _ = run(capsys, "list", "methods")
    assert code == 0 and f"plugin {plugin}" in out
    code, out, _ = run(capsys, "show", "smoke", "--method", "env_adapter")
    assert code == 0 and "Your Name et al. Your Method" in out


def installed_package(tmp_path, source: str, init: str, **modules: str):
    """``acme_methods`` (``adapters.py`` = ``source``, an entry point to it, other ``modules``) pip-installed
    into ``tmp_path/site``, which it returns."""
    package = tmp_path / "pkg"
    (package / "acme_methods").mkdir(parents=True)
    (package / "acme_methods" / "__init__.py").write_text(init)
    for name, text in modules.items():
        (package / "acme_methods" / f"{name}.py").write_text(text)
    (package / "acme_methods" / "adapters.py").write_text(source)
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "acme-methods"\nversion = "1.0"\n'
        '[project.entry-points."lt_prompt_bench.plugins"]\nacme = "acme_methods.adapters"\n')
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", "install", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(package)],
                   check=True, capture_output=True)
    return site


@pytest.mark.slow  # pip installs a package
def test_an_installed_package_is_found_through_its_entry_point(tmp_path, bench_cache):
    site = installed_package(tmp_path, new_method(tmp_path / "code", "acme_adapter").read_text(), "")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "BENCH_CACHE": str(bench_cache)}

    def bench(*argv):
        return subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    listed = bench("list", "methods")
    assert listed.returncode == 0 and re.search(r"acme_adapter +plugin acme_methods.adapters +acme_adapter:", listed.stdout)
    ran = bench("run", "--protocol", "smoke", "--method", "acme_adapter", "--seeds", "1", "--no-progress")
    assert ran.returncode == 0, ran.stderr
    record = json.loads(next((tmp_path / "results" / "smoke" / "acme_adapter").glob("*/seed-1.json")).read_text())
    assert record["origin"]["plugin"] == "acme_methods.adapters"
    board = bench("leaderboard", "--protocol", "smoke")
    assert board.returncode == 0 and "| acme_adapter | 1 | " in board.stdout


@pytest.mark.slow  # subprocesses and a pip install: about 90 s on 2 cores
def test_a_plugin_file_keeps_its_results_once_packaged_and_says_when_it_is_not_loaded(tmp_path, bench_cache):
    """The same source gives the same key as a --plugin file and inside a package with an entry point;
    without it, the leaderboard says the method is not loaded; both ways at once say how to develop one."""
    plugin = new_method(tmp_path / "code", "acme_adapter")
    site = installed_package(tmp_path, plugin.read_text(), '"""Acme\'s methods."""\n',
                             helpers="SCALE = 2\n")  # files around it do not count

    def bench(*argv, installed=False):
        path = [str(site), str(ROOT)] if installed else [str(ROOT)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "BENCH_CACHE": str(bench_cache)}
        return subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    cell = ["--protocol", "smoke", "--method", "acme_adapter", "--seeds", "1", "--no-progress"]
    assert bench("run", "--plugin", str(plugin), *cell).returncode == 0
    board = bench("leaderboard", "--protocol", "smoke", installed=True)
    assert board.returncode == 0 and "| acme_adapter | 1 | " in board.stdout and board.stderr == "", board.stderr
    assert bench("run", *cell, installed=True).returncode == 0
    assert len(list((tmp_path / "results" / "smoke" / "acme_adapter").glob("*/seed-1.json"))) == 1  # not rerun
    twice = bench("run", "--plugin", str(plugin), *cell, installed=True)
    assert twice.returncode == 2 and "method 'acme_adapter' is already registered" in twice.stderr
    assert "pip install -e" in twice.stderr and "do not pass --plugin" in twice.stderr
    missing = bench("leaderboard", "--protocol", "smoke")
    assert missing.returncode == 2 and "method 'acme_adapter' is not loaded: pass --plugin" in missing.stderr
    assert bench("run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1").returncode == 0
    board = bench("leaderboard", "--protocol", "smoke")
    assert board.returncode == 0 and "| zeroshot | 1 |" in board.stdout and "acme_adapter" not in board.stdout
    assert "bench: note: method 'acme_adapter' is not loaded: pass --plugin" in board.stderr
    assert "other configurations" not in board.stderr


BROKEN = {
    "raises": ("raise RuntimeError('no GPU here')\n", "failed to import: RuntimeError: no GPU here"),
    "syntax": ("def broken(:\n", "failed to import: SyntaxError"),
    "nothing": ("X = 1\n", "registers nothing"),
    "clash": ("from bench.api import METHODS, Method\n@METHODS.register('coop')\nclass Mine(Method):\n    pass\n",
              "method 'coop' is already registered (built-in); rename one of them"),
    "config": ("from bench.api import METHODS, Method, MethodCard\n@METHODS.register('mine')\nclass Mine(Method):\n"
               "    Config = dict\n    card = MethodCard(paper='p', code='c')\n", "method 'mine': Config must be a @dataclass"),
    "card": ("from bench.api import METHODS, Method\n@METHODS.register('mine')\nclass Mine(Method):\n    pass\n",
             "method 'mine': card must be a MethodCard"),
    "family": ("from bench.api import METHODS, Method, MethodCard, Recipe\n@METHODS.register('mine')\n"
               "class Mine(Method):\n    card = MethodCard(paper='p', code='c', recipes={'ltt': Recipe('s')})\n",
               "method 'mine': card.recipes: unknown protocol family 'ltt'; did you mean 'lt'?"),
    "recipe": ("from bench.api import METHODS, Method, MethodCard, Recipe\n@METHODS.register('mine')\n"
               "class Mine(Method):\n    card = MethodCard(paper='p', code='c', recipes={'lt': Recipe('s', train={'lr': 'x'})})\n",
               "card.recipes.lt.train.lr: expected a number"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_is_one_error_line_naming_it(tmp_path, capsys, case):
    source, problem = BROKEN[case]
    plugin = tmp_path / f"{case}.py"
    plugin.write_text(source)
    err = one_error(capsys, "list", "methods", "--plugin", str(plugin))
    assert f"plugin '{plugin}'" in err and problem in err


def test_two_plugins_registering_one_name_name_each_other(tmp_path, capsys):
    first, second = new_method(tmp_path / "a", "twin"), new_method(tmp_path / "b", "twin")
    err = one_error(capsys, "list", "--plugin", str(first), "--plugin", str(second))
    assert f"plugin '{second}': method 'twin' is already registered (by plugin {first})" in err


@pytest.mark.parametrize("spec, problem", [("missing_file.py", "no such file"),
                                           ("no_such_module_xyz", "no module of that name")])
def test_a_plugin_that_is_not_there_is_named(capsys, spec, problem):
    err = one_error(capsys, "run", "--plugin", spec, "--protocol", "smoke", "--method", "coop")
    assert f"plugin '{spec}'" in err and problem in err
