"""The README's set-up commands are the ones CI and users run."""
import re
from pathlib import Path

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
