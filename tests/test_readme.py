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
