"""A non-editable install has everything: the wheel is built, installed (without dependencies: they
are this environment's) into a folder of its own, and `bench` is run against it from another folder."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # a wheel is built and installed


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(site folder, environment)`` of the project's wheel installed with ``pip install --target``."""
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # no build isolation: the build uses this environment's setuptools instead of fetching one
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(ROOT)],
                   check=True, capture_output=True, cwd=work)
    wheel, = (work / "dist").glob("lt_prompt_bench-*.whl")
    site = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, cwd=work)
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1",
           "PATH": f"{site / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return site, env


def bench(args, env, cwd):
    return subprocess.run(["bench", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_the_wheel_holds_every_package_and_shipped_file(installed):
    site, env = installed
    packages = {p.parent.relative_to(site).as_posix() for p in site.rglob("__init__.py")}
    expected = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "bench").glob("**/__init__.py")}
    assert expected <= packages and {"bench/kb", "bench/cli", "bench/methods", "bench/reports"} <= packages
    top_level = {p.relative_to(site).parts[0] for p in site.glob("*/__init__.py")}
    assert top_level == {"bench"}  # no other importable name a user's own package could shadow
    for pattern in ("bench/protocols/*.yaml", "bench/reports/*.yaml", "bench/model/model_configs/*.json", "bench/cli/templates/*.txt",
                    "bench/data/splits/*/*.gz", "bench/data/splits/*/SOURCE.md"):
        shipped = {p.relative_to(ROOT) for p in ROOT.glob(pattern)}
        assert shipped and shipped == {p.relative_to(site) for p in site.glob(pattern)}, pattern


def test_bench_runs_from_the_wheel_in_another_folder(installed, tmp_path, bench_cache):
    site, env = installed
    env = {**env, "BENCH_CACHE": str(bench_cache)}
    where = subprocess.run([sys.executable, "-c", "import bench, bench.methods; print(bench.__file__, bench.methods.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert all(path.startswith(str(site)) for path in where.stdout.split())  # not the checkout
    listed = bench(["list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    checkout = subprocess.run([sys.executable, "-m", "bench", "list"], capture_output=True, text=True, cwd=ROOT)
    assert listed.stdout == checkout.stdout and "  smoke " in listed.stdout and "  cpt " in listed.stdout
    reports = bench(["list", "reports"], env, tmp_path)
    assert reports.returncode == 0 and "(bench report cpt_table1)" in reports.stdout, reports.stderr
    run = bench(["run", "--protocol", "smoke", "--method", "zeroshot", "coop", "--seeds", "1"], env, tmp_path)
    assert run.returncode == 0, run.stderr
    board = bench(["leaderboard", "--protocol", "smoke"], env, tmp_path)
    assert board.returncode == 0, board.stderr
    rows = [line.split(" | ")[0] for line in board.stdout.splitlines() if line.startswith("| ") and " | 1 | " in line]
    assert sorted(rows) == ["| coop", "| zeroshot"]
    assert len(list((tmp_path / "results" / "smoke").rglob("seed-1.json"))) == 2


def test_a_users_own_methods_package_does_not_hide_the_built_ins(installed, tmp_path, bench_cache):
    """A method author's repository often has methods/, protocols/ and reports/ packages of its own: run
    from there (first on sys.path), bench still lists and runs its built-in methods and protocols."""
    site, env = installed
    env = {**env, "BENCH_CACHE": str(bench_cache)}
    for package in ("methods", "protocols", "reports"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"raise ImportError('the user\'s own {package}')\n")
    code = ("import sys; from bench.cli import main; "
            "sys.exit(main(['run', '--protocol', 'smoke', '--method', 'zeroshot', '--seeds', '1']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    listed = subprocess.run([sys.executable, "-c", "from bench.cli import main; main(['list', 'methods'])"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert listed.returncode == 0 and "  coop " in listed.stdout and "  cpt " in listed.stdout, listed.stderr
