"""Hostile round three (issue 39): leases in odd shapes (a file where the cell's folder should be, a
folder where the lease should be, the takeover marker a crashed worker leaves, a dead holder on this
host), a full disk while a cell writes, and a SLURM task killed by a signal."""
import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import torch

from bench.cli import main
from test_overrides import one_error  # noqa: E402  (the CLI helpers)

SELECT = ["--protocol", "smoke", "--method", "zeroshot", "--seeds", "1"]


def cell_folder(root: Path, method: str = "zeroshot") -> Path:
    """Where the smoke cell of ``method`` keeps its files (its key as `bench run` makes it)."""
    from bench.config.protocol import load_protocol
    from bench.engine.runner import Runner, RunOptions

    runner = Runner(load_protocol("smoke"), RunOptions(results_dir=root, keys_only="auto"))
    key = runner.plan([method], [1])[0].key
    return runner.store.cell_dir("smoke", method, key)


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def lease_of(pid: int, token: str = "t1") -> str:
    return json.dumps({"host": socket.gethostname(), "pid": pid, "job": None, "token": token, "since": "earlier"})


def status_line(capsys, root: Path) -> str:
    assert main(["status", *SELECT, "--results-dir", str(root)]) == 0
    out = capsys.readouterr().out
    return next((line for line in out.splitlines() if "smoke / zeroshot / seed 1" in line), "to do")


@pytest.mark.parametrize("blocked", ["cell", "method"])
def test_a_file_where_the_cells_folder_should_be_is_one_error_line(tmp_path, capsys, blocked):
    root = tmp_path / "results"
    folder = cell_folder(root)
    in_the_way = folder if blocked == "cell" else folder.parent
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_text("not a folder")
    err = one_error(capsys, "run", *SELECT, "--results-dir", str(root))
    assert f"'{in_the_way}' is a file where a folder of results should be; move it away" in err
    assert in_the_way.read_text() == "not a folder"


def test_a_folder_where_the_lease_should_be_is_set_aside_and_status_calls_it_stale(tmp_path, capsys):
    root = tmp_path / "results"
    lease = cell_folder(root) / "seed-1.lease"
    (lease / "inside").mkdir(parents=True)
    assert status_line(capsys, root).startswith("stale ")  # `bench run` takes it: both say so
    assert main(["run", *SELECT, "--results-dir", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "bench: 1 cells: 1 ran" in out
    assert f"lease '{lease}' was a folder, not a lease file" in err and "set aside as 'seed-1.lease.corrupt'" in err
    assert lease.with_name("seed-1.json").exists() and not lease.exists()
    assert (lease.with_name("seed-1.lease.corrupt") / "inside").is_dir()  # nothing deleted
    assert not list(root.rglob("*.takeover-*"))


@pytest.mark.parametrize("marker_of", ["a dead worker", "an old worker, long ago"])
def test_the_takeover_marker_a_crash_leaves_does_not_block_the_cell(tmp_path, capsys, marker_of):
    root = tmp_path / "results"
    lease = cell_folder(root) / "seed-1.lease"
    lease.parent.mkdir(parents=True)
    lease.write_text(lease_of(dead_pid()))
    marker = lease.with_name("seed-1.lease.takeover-t1")  # a worker died between its marker and the lease
    if marker_of == "a dead worker":
        marker.write_text(lease_of(dead_pid(), "t2"))
    else:  # an empty marker (as workers made them before), not followed by its takeover for an hour
        marker.touch()
        os.utime(marker, (time.time() - 3600, time.time() - 3600))
    assert status_line(capsys, root).startswith("stale ")
    assert main(["run", *SELECT, "--results-dir", str(root), "--lease-timeout", "60"]) == 0
    out, err = capsys.readouterr()
    assert "bench: 1 cells: 1 ran" in out and "running elsewhere" not in out
    assert lease.with_name("seed-1.json").exists() and not list(root.rglob("*.lease*"))


def test_a_takeover_under_way_is_running_for_both_run_and_status(tmp_path, capsys):
    root = tmp_path / "results"
    lease = cell_folder(root) / "seed-1.lease"
    lease.parent.mkdir(parents=True)
    lease.write_text(lease_of(dead_pid()))
    lease.with_name("seed-1.lease.takeover-t1").write_text(lease_of(os.getpid(), "t2"))  # a live worker's
    assert status_line(capsys, root).startswith("running ")
    assert main(["run", *SELECT, "--results-dir", str(root)]) == 0
    assert "1 running elsewhere" in capsys.readouterr().out and not lease.with_name("seed-1.json").exists()


def test_a_dead_holder_on_this_host_is_taken_over_with_the_warning_the_readme_promises(tmp_path, capsys):
    root = tmp_path / "results"
    lease = cell_folder(root) / "seed-1.lease"
    lease.parent.mkdir(parents=True)
    pid = dead_pid()
    lease.write_text(lease_of(pid))
    assert main(["run", *SELECT, "--results-dir", str(root)]) == 0
    err = capsys.readouterr().err
    assert f"bench: warning: lease '{lease}' of {socket.gethostname()} (pid {pid}, job None) is stale: that " \
           "process has ended (killed or crashed); taking the cell over" in err
    assert not lease.exists() and lease.with_name("seed-1.json").exists()


# -- a full disk -------------------------------------------------------------------------------------------

def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


TWO_CELLS = ["--protocol", "smoke", "--method", "coop", "zeroshot", "--seeds", "1", "--set", "coop.train.epochs=1",
             "--no-progress"]


def test_a_full_disk_while_writing_a_checkpoint_stops_the_launch_with_one_line(tmp_path, capsys, monkeypatch):
    root = tmp_path / "results"
    warm = ["run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "--no-progress"]
    assert main([*warm, "--results-dir", str(tmp_path / "warm")]) == 0  # the backbone cache is on another disk
    capsys.readouterr()
    monkeypatch.setattr(torch, "save", no_space)
    err = one_error(capsys, "run", *TWO_CELLS, "--results-dir", str(root))
    assert re.match(rf"bench: error: no space left on device writing '{re.escape(str(root))}/smoke/coop/\w+/"
                    r"seed-1\.ckpt'; free space on its disk or use --results-dir elsewhere \(stopped at \[1/2\] "
                    r"smoke / coop / seed 1: the same command goes on from there", err), err
    files = [p.name for p in root.rglob("*") if p.is_file()]
    assert not [name for name in files if name.startswith("seed-")], files  # no record, lease, half file
    assert not [name for name in files if name.endswith(".tmp")], files
    monkeypatch.undo()
    assert main(["run", *TWO_CELLS, "--results-dir", str(root)]) == 0  # space again: both run
    assert "bench: 2 cells: 2 ran" in capsys.readouterr().out


def test_a_full_disk_after_cells_ran_says_what_ran_before_it_stopped(tmp_path, capsys, monkeypatch):
    from bench.engine import store

    root = tmp_path / "results"
    real = store.write_json

    def zeroshot_is_full(path, data, compact=False):  # the second cell's result does not fit
        return no_space() if "zeroshot" in Path(path).parts else real(path, data, compact)

    monkeypatch.setattr(store, "write_json", zeroshot_is_full)
    err = one_error(capsys, "run", *TWO_CELLS, "--results-dir", str(root))
    assert re.search(r"no space left on device writing '\S+/smoke/zeroshot/\w+/seed-1\.json'; free space", err), err
    assert "(stopped at [2/2] smoke / zeroshot / seed 1 after 1 ran:" in err
    assert [p.name for p in root.glob("smoke/coop/*/seed-1.json")] == ["seed-1.json"]
    assert not list(root.glob("smoke/zeroshot/*/*"))  # left to do: no record, lease or half file


def test_a_full_disk_while_recording_a_failure_leaves_no_traceback_without_its_record(tmp_path, capsys,
                                                                                      monkeypatch):
    from bench.core import atomic
    from bench.engine.runner import Runner

    root = tmp_path / "results"
    monkeypatch.setattr(Runner, "run_cell", lambda *a, **k: 1 / 0)  # the cell fails for its own reason
    real = atomic.write_atomic

    def json_is_full(path, write, binary=False):  # the traceback file fits, its record does not
        return no_space() if Path(path).suffix == ".failed" else real(path, write, binary)

    monkeypatch.setattr(atomic, "write_atomic", json_is_full)
    err = one_error(capsys, "run", *SELECT, "--results-dir", str(root))
    failed = cell_folder(root) / "seed-1.failed"
    assert f"no space left on device writing '{failed}'" in err
    assert not [p.name for p in root.rglob("seed-1*")]  # neither the traceback nor the record


def test_a_full_disk_while_taking_a_lease_leaves_no_empty_lease_behind(tmp_path, capsys, monkeypatch):
    """An empty lease would block the cell for --lease-timeout seconds as a damaged one."""
    class Full:
        def __init__(self, fd, *args, **kwargs):
            self.fd = fd

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            os.close(self.fd)

        def write(self, text):
            no_space()

    from bench.engine import lease

    root = tmp_path / "results"
    monkeypatch.setattr(lease, "os", types.SimpleNamespace(**{**vars(os), "fdopen": Full}))  # the lease's writes only
    err = one_error(capsys, "run", *SELECT, "--results-dir", str(root))
    assert f"no space left on device writing '{cell_folder(root) / 'seed-1.lease'}'; free space" in err
    assert not list(root.rglob("seed-1*"))


def test_a_full_disk_is_found_behind_torch_saves_own_error():
    from bench.engine.nospace import disk_full

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    except RuntimeError as err:
        wrapped = err
    full = disk_full(wrapped, "/shared/cache/features/x.pt", results=Path("/shared/results"))
    assert str(full) == "no space left on device writing '/shared/cache/features/x.pt'; free space on its disk"
    assert disk_full(RuntimeError("other"), "x") is None
    quota = disk_full(OSError(errno.EDQUOT, "Disk quota exceeded", "/r/a.json"), results=Path("/r"))
    assert str(quota) == "disk quota exceeded writing '/r/a.json'; free space on its disk or use --results-dir elsewhere"


# -- SLURM: a killed task, accounting, no probe left ---------------------------------------------------------

def kill_a_task_mid_cell(root: Path, killed: list) -> None:
    """Kill (SIGKILL) the array task holding a cell once its log shows epoch 3: as the OOM killer would."""
    deadline = time.time() + 300
    while not killed and time.time() < deadline:
        if any("epoch 3/" in log.read_text() for log in root.glob(".slurm/*/*_log.out")):
            for lease in root.rglob("seed-*.lease"):
                with contextlib.suppress(OSError, ValueError):
                    pid = json.loads(lease.read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_slurm_task_is_said_killed_and_a_launch_whose_cells_all_ended_exits_0(tmp_path, capsys,
                                                                                       monkeypatch):
    """Two local array tasks; one is SIGKILLed mid-cell, the other takes its cell over and finishes the plan."""
    pytest.importorskip("submitit", reason="submitit is the [slurm] extra")
    from submitit.core import core

    monkeypatch.setattr(core.Job, "_results_timeout_s", 1)  # a task with no result: do not wait 15 s for one
    root = tmp_path / "results"
    select = ["--protocol", "smoke", "--method", "coop", "--seeds", "1", "2", "--set", "coop.train.epochs=6",
              "--results-dir", str(root)]
    killed: list = []
    killer = threading.Thread(target=kill_a_task_mid_cell, args=(root, killed), daemon=True)
    killer.start()
    code = main(["run", *select, "--no-progress", "--launcher", "slurm", "--slurm-cluster", "local", "--slurm-array", "2",
                 "--slurm-gpus", "0"])
    killer.join()
    out, err = capsys.readouterr()
    assert killed and code == 0, err
    assert "bench: 2 cells: 2 ran" in out and len(list(root.glob("smoke/coop/*/seed-*.json"))) == 2
    warning = re.search(r"bench: warning: SLURM task (\d) \(job \S+\) was killed by a signal before it could record "
                        r"an error .*; its last output is in (\S+_log\.out); another task went through every cell", err)
    assert warning and "epoch" not in err, err
    assert not list(root.glob(".probe-*")) and not list(root.rglob("*.lease"))
    assert main(["status", *select]) == 0
    status = capsys.readouterr().out
    assert f"FAILED: 1 task(s); task {warning.group(1)}: killed by a signal" in status
    assert f"(its last output in {warning.group(2)})" in status and "| smoke | coop | 2 | 0 | 0 | 0 | 0 |" in status


def test_status_names_a_task_slurm_killed_from_its_accounting(tmp_path, capsys, monkeypatch):
    """A real cluster's submitter does not wait: `bench status` asks sacct how a task without a result ended."""
    root = tmp_path / "results"
    logs = root / ".slurm" / "20260101-000000-000000"
    logs.mkdir(parents=True)
    (logs / "launch.json").write_text(json.dumps({"submitted": "2026-01-01T00:00:00", "jobs": ["991_0", "991_1"],
                                                  "protocols": ["smoke"], "methods": ["zeroshot"]}))
    (logs / "991_0_0_result.pkl").write_bytes(b"")  # task 0 finished
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sacct = bin_dir / "sacct"
    sacct.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'asked'}\n"
                     "printf '991_0|COMPLETED|0:0\\n991_1|OUT_OF_MEMORY|0:9\\n'\n")
    sacct.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert main(["status", *SELECT, "--results-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"FAILED: 1 task(s); task 1: killed by SIGKILL (job state OUT_OF_MEMORY) before it could record an " \
           f"error (its last output in {logs}/991_1_0_log.out)" in out
    assert "failed   smoke / zeroshot / seed 1: its SLURM launch (2026-01-01T00:00:00) failed" in out
    assert "-j 991" in (tmp_path / "asked").read_text()


def test_a_slurm_launch_leaves_no_probe_file_in_the_results_folder(tmp_path, capsys):
    pytest.importorskip("submitit", reason="submitit is the [slurm] extra")
    root = tmp_path / "results"
    assert main(["run", *SELECT, "--results-dir", str(root), "--launcher", "slurm", "--slurm-cluster", "debug",
                 "--slurm-array", "1", "--slurm-gpus", "0"]) == 0
    assert "bench: 1 cells: 1 ran" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == [".slurm"]
    note, = root.glob(".slurm/*/launch.json")
    assert len(json.loads(note.read_text())["jobs"]) == 1


# -- a lease or cache file that is not a file (issue 39 verification: A, B, C, E) --------------------------

@pytest.fixture
def no_hang():
    """Fails the test instead of hanging it (opening a FIFO waits for a writer for good)."""
    def hung(number, frame):
        raise TimeoutError("hung: something opened a FIFO and waits for a writer")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


def make_odd(path: Path, kind: str) -> str:
    """Put ``kind`` at ``path``; what the warning calls it."""
    if kind == "fifo":
        os.mkfifo(path)
        return "a FIFO (named pipe)"
    path.symlink_to("/nonexistent/zz")
    return "a dangling symbolic link (to '/nonexistent/zz')"


@pytest.mark.parametrize("kind", ["fifo", "dangling link"])
def test_a_fifo_or_dangling_link_where_the_lease_should_be_is_set_aside_and_status_calls_it_stale(
        tmp_path, capsys, no_hang, kind):
    root = tmp_path / "results"
    lease = cell_folder(root) / "seed-1.lease"
    lease.parent.mkdir(parents=True)
    called = make_odd(lease, kind)
    line = status_line(capsys, root)  # before: a FIFO hung it; a dangling link was 'to do'
    assert line.startswith("stale ") and f": {called} where its lease should be, " in line, line
    assert main(["run", *SELECT, "--results-dir", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "bench: 1 cells: 1 ran" in out and "running elsewhere" not in out
    assert f"lease '{lease}' was {called}, not a lease file (no bench worker makes one); set aside as " \
           "'seed-1.lease.corrupt'" in err
    aside = lease.with_name("seed-1.lease.corrupt")
    assert (aside.is_fifo() if kind == "fifo" else aside.is_symlink())  # nothing deleted
    assert lease.with_name("seed-1.json").exists() and not os.path.lexists(lease)
    assert not list(root.rglob("*.takeover-*"))


def test_a_symbolic_link_to_a_lease_file_is_a_lease(tmp_path, capsys):
    root = tmp_path / "results"
    lease = cell_folder(root) / "seed-1.lease"
    lease.parent.mkdir(parents=True)
    (tmp_path / "elsewhere.lease").write_text(lease_of(os.getpid()))  # held by a live process: this one
    lease.symlink_to(tmp_path / "elsewhere.lease")
    assert status_line(capsys, root).startswith("running ")
    assert main(["run", *SELECT, "--results-dir", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "1 running elsewhere" in out and "set aside" not in err and lease.is_symlink()


@pytest.mark.parametrize("blocked", ["a link loop at the method folder", "a dangling link at the cell folder"])
def test_a_link_where_a_folder_of_results_should_be_is_one_error_line_saying_what_it_is(tmp_path, capsys,
                                                                                        blocked):
    root = tmp_path / "results"
    folder = cell_folder(root)
    if blocked.startswith("a link loop"):
        in_the_way, called = folder.parent, "a symbolic link loop"
        in_the_way.parent.mkdir(parents=True)
        in_the_way.symlink_to("zeroshot")  # results/smoke/zeroshot -> itself
    else:
        in_the_way, called = folder, "a dangling symbolic link (to '/nonexistent/zz')"
        in_the_way.parent.mkdir(parents=True)
        in_the_way.symlink_to("/nonexistent/zz")
    err = one_error(capsys, "run", *SELECT, "--results-dir", str(root))
    assert f"cannot take a lease in '{folder}': '{in_the_way}' is {called} where a folder of results should be; " \
           "move it away" in err, err
    assert in_the_way.is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "dangling link"])
def test_a_fifo_or_dangling_link_in_a_feature_cache_files_place_is_set_aside_and_encoded_again(
        backbone, smoke_data, smoke_transforms, tmp_path, capsys, no_hang, kind):
    from bench.engine.features import FeatureCache

    def views():
        cache = FeatureCache(tmp_path, backbone, {"name": "test"}, torch.device("cpu"), "fp32", lambda line: None)
        return cache.views(smoke_data.test, smoke_transforms[1], 1, {"split": "test"})

    first = views()
    [path] = (tmp_path / "features").glob("*.pt")
    path.unlink()
    called = make_odd(path, kind)
    again = views()
    assert torch.equal(again.features, first.features) and path.is_file() and not path.is_symlink()
    err = capsys.readouterr().err
    assert f"feature cache '{path}' cannot be used (it is {called}, not a file); set aside as '{path.name}.corrupt', " \
           "encoding again" in err, err


def test_a_full_disk_in_a_cell_that_does_not_train_does_not_speak_of_its_checkpoint(tmp_path, capsys, monkeypatch):
    from bench.engine import store

    monkeypatch.setattr(store, "write_json", lambda *a, **k: no_space())
    err = one_error(capsys, "run", *SELECT, "--results-dir", str(tmp_path / "results"))
    assert "(stopped at [1/1] smoke / zeroshot / seed 1: the same command goes on from there, a cell that trains " \
           "from its last checkpoint)" in err, err


def test_a_failed_slurm_launch_marks_only_the_cells_of_its_own_configuration(tmp_path):
    """A launch of coop with --set values had a task killed: `bench status` of the default coop named
    that launch's failure for cells it never ran (its note held protocols and methods, not keys)."""
    import json

    from bench.launch.cells import CellState
    from bench.launch.slurm import mark_failed_launches

    mine, other = "a" * 64, "b" * 64
    folder = tmp_path / ".slurm" / "20261207-100000-000000"
    folder.mkdir(parents=True)
    (folder / "launch.json").write_text(json.dumps({"submitted": "2026-12-07T10:00:00", "jobs": [],
                                                    "protocols": ["smoke"], "methods": ["coop"], "keys": [mine]}))
    (folder / "task-0.failed.json").write_text(json.dumps({"task": 0, "error": "killed by a signal"}))
    states = [CellState("smoke", "coop", 1, "lt", "to do", key=key) for key in (mine, other)]
    assert mark_failed_launches(states, tmp_path) == 1
    assert [s.state for s in states] == ["failed", "to do"]
    (folder / "launch.json").write_text(json.dumps({"submitted": "2026-12-07T10:00:00", "jobs": [],
                                                    "protocols": ["smoke"], "methods": ["coop"]}))
    states = [CellState("smoke", "coop", 1, "lt", "to do", key=key) for key in (mine, other)]
    assert mark_failed_launches(states, tmp_path) == 2  # a note of an older bench (no keys): as before
