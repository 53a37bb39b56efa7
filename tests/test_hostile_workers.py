"""Hostile round 3 (issue 39), `bench run --workers N`: a worker killed mid-cell, the launcher stopped
(SIGTERM) or killed (SIGKILL), and ``--retry-failed`` with several workers.  The launches are real
processes (`python -m bench`) on the smoke protocol."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_launch import SCALED  # the test plugins' base method

PLUGIN = SCALED + '''

@METHODS.register("dies_once")
class DiesOnce(Scaled):
    """Its worker is killed (as by the OOM killer) in the first training step after $BENCH_TEST_FLAG appears."""

    def forward(self, images):
        if self.training and os.path.exists(os.environ["BENCH_TEST_FLAG"]):
            os.unlink(os.environ["BENCH_TEST_FLAG"])
            os.kill(os.getpid(), 9)
        return super().forward(images)


@METHODS.register("always_fails")
class AlwaysFails(Scaled):
    """Each training attempt adds a line to $BENCH_TEST_COUNT, then fails."""

    def forward(self, images):
        if self.training:
            with open(os.environ["BENCH_TEST_COUNT"], "a") as f:
                f.write("attempt\\n")
            raise RuntimeError("always fails")
        return super().forward(images)
'''

WORKERS = ["--workers", "2", "--devices", "cpu", "--threads", "1", "--no-progress"]


@pytest.fixture
def env(bench_cache, tmp_path):
    plugin = tmp_path / "hostile_methods.py"
    plugin.write_text(PLUGIN)
    return {**os.environ, "BENCH_CACHE": str(bench_cache), "HF_HUB_OFFLINE": "1",
            "BENCH_TEST_FLAG": str(tmp_path / "die-now"), "BENCH_TEST_COUNT": str(tmp_path / "attempts"),
            "PLUGIN": str(plugin)}


def bench(args, env, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)


def gone(pid: int) -> bool:
    """The process has ended (a zombie no one reaps counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def leases(root: Path) -> list:
    return sorted(root.rglob("*.lease*"))


@pytest.mark.slow
def test_a_worker_killed_mid_cell_does_not_end_the_launch(tmp_path, env):
    (tmp_path / "die-now").touch()  # the first worker to train is killed by SIGKILL, its lease left behind
    args = ["run", "--plugin", env["PLUGIN"], "--protocol", "smoke", "--method", "dies_once", "--seeds", "1", "2",
            *WORKERS, "--results-dir", str(tmp_path / "results")]
    run = bench(args, env, tmp_path)
    log = run.communicate(timeout=600)[0]
    assert run.returncode == 0 and "Traceback" not in log and "BrokenProcessPool" not in log, log
    assert re.search(r"bench: worker w\d \(cpu\) died \(killed by SIGKILL\); a new w\d takes its place", log), log
    assert "bench: 2 cells: 2 ran\n" in log and not (tmp_path / "die-now").exists(), log
    assert "leaked semaphore" not in log, log  # tqdm's cross-process lock, which the killed worker left
    assert len(list((tmp_path / "results").rglob("seed-*.json"))) == 2
    assert not leases(tmp_path / "results"), log  # the dead worker's lease was taken over, then released


def launch_until_both_workers_train(tmp_path, env) -> tuple:
    """A launch of two long cells, once each worker is training one: the process, its log so far and
    the workers' pids (from their leases)."""
    args = ["run", "--protocol", "smoke", "--method", "coop", "--seeds", "1", "2", "--set", "coop.train.epochs=400",
            *WORKERS, "--results-dir", str(tmp_path / "results")]
    run, log, training = bench(args, env, tmp_path), [], set()
    for line in run.stdout:
        log.append(line)
        training |= set(re.findall(r"^\[(w\d)\] .*: epoch 1/400", line))
        if len(training) == 2:
            break
    pids = [json.loads(lease.read_text())["pid"] for lease in leases(tmp_path / "results")]
    if len(pids) != 2 or run.poll() is not None:
        run.kill()
        end_within(pids, 0)
        pytest.fail("".join(log))
    return run, "".join(log), pids


def end_within(pids: list, seconds: float) -> list:
    """The pids still running after ``seconds``; those are killed (no test leaves a worker behind)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(gone(pid) for pid in pids):
        time.sleep(0.5)
    alive = [pid for pid in pids if not gone(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_launcher_stops_the_workers_releases_their_leases_and_counts_the_cells_stopped(
        tmp_path, env, number):
    run, log, pids = launch_until_both_workers_train(tmp_path, env)
    run.send_signal(number)  # SIGTERM: what `timeout` and schedulers send; SIGINT: Ctrl-C
    try:
        log += run.communicate(timeout=120)[0]
    finally:
        alive = end_within(pids, 10)
    assert run.returncode == 128 + number and not alive, log
    assert f"bench: stopped by {number.name}: the workers were stopped and their leases released" in log, log
    assert "\nbench: 2 cells: 2 stopped mid-run\n" in log and "Traceback" not in log, log  # before: 0 cells: none
    assert not leases(tmp_path / "results"), log


@pytest.mark.slow
def test_the_workers_of_a_killed_launcher_stop_and_release_their_leases(tmp_path, env):
    run, log, pids = launch_until_both_workers_train(tmp_path, env)
    run.kill()
    try:
        run.wait(timeout=60)  # not its output: workers left behind would hold it open
    finally:
        alive = end_within(pids, 30)  # before: they trained their 400 epochs, then idled for good
    assert not alive and not leases(tmp_path / "results"), log


@pytest.mark.slow
def test_retry_failed_with_several_workers_runs_each_failing_cell_once(tmp_path, env):
    args = ["run", "--plugin", env["PLUGIN"], "--protocol", "smoke", "--method", "always_fails", "--seeds", "1",
            "--no-progress", "--results-dir", str(tmp_path / "results")]
    first = bench(args, env, tmp_path)
    assert first.communicate(timeout=600) and first.returncode == 1
    run = bench([*args, "--retry-failed", *WORKERS], env, tmp_path)
    log = run.communicate(timeout=600)[0]
    assert run.returncode == 1 and "bench: 1 cells: 1 failed;" in log, log
    assert (tmp_path / "attempts").read_text().count("attempt") == 2, log  # once before, once in this launch
    assert "failed before (RuntimeError: always fails); skipped, it failed again in this launch" in log, log  # the other worker


def test_retry_failed_runs_again_only_the_failures_recorded_before_the_launch(tmp_path):
    from bench.engine.store import ResultStore
    from bench.launch.workers import FailedBefore

    store, where = ResultStore(tmp_path), ("smoke", "coop", "k" * 64, 1)
    store.write_failure(*where, "RuntimeError: before", "trace")
    launched = time.time()
    os.utime(store.failure_path(*where), (launched - 60, launched - 60))
    assert FailedBefore(tmp_path, launched).failure(*where) is None  # run again in this launch
    store.write_failure(*where, "RuntimeError: again", "trace")  # as a worker of this launch does
    assert FailedBefore(tmp_path, launched).failure(*where)["error"] == "RuntimeError: again"  # not a third time
    assert store.failure(*where)["error"] == "RuntimeError: again"
