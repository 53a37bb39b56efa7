"""Exactly once at scale: leases, recorded failures, `bench plan` / `bench status`, concurrent `bench run`
processes, local workers, a worker killed mid-cell, damaged and foreign leases.  Processes are real
(`python -m bench`), and training starts are counted from their logs, not only the files they leave."""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.cli import main

pytestmark = pytest.mark.slow  # real processes, workers and SLURM arrays

# A test plugin's base: zero-shot features with a learned scale (the plugins here and in
# test_hostile_workers.py subclass it to fail or die on cue).
SCALED = '''
import os

import torch
import torch.nn.functional as F

from bench.api import METHODS, Method, MethodCard, Recipe


class Scaled(Method):
    card = MethodCard(paper="p", code="c", recipes={"lt": Recipe("test", train={"epochs": 2})})

    def __init__(self, backbone, data, cfg):
        super().__init__(backbone, data, cfg)
        self.scale = torch.nn.Parameter(torch.ones(()))
        with torch.no_grad():
            text = backbone.encode_text(backbone.tokenize([data.template.format(c) for c in data.classnames]))
        self.register_buffer("text", F.normalize(text, dim=-1), persistent=False)

    def forward(self, images):
        return self.scale * self.image_features(images) @ self.text.t()
'''

FLAKY = SCALED + '''

@METHODS.register("flaky")
class Flaky(Scaled):
    """Zero-shot features with a learned scale; training fails while $BENCH_TEST_FLAG exists."""

    card = MethodCard(paper="p", code="c", recipes={"lt": Recipe("test", train={"epochs": 1})})

    def forward(self, images):
        if os.path.exists(os.environ["BENCH_TEST_FLAG"]):
            raise RuntimeError("the flag file is there")
        return super().forward(images)
'''


def bench_process(args, env, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=cwd, **kw)


@pytest.fixture
def env(bench_cache):
    return {**os.environ, "BENCH_CACHE": str(bench_cache), "HF_HUB_OFFLINE": "1"}


def training_starts(log: str) -> Counter:
    """(method, seed) -> how many times its training began (its first epoch line), from run logs."""
    return Counter(re.findall(r"smoke / (\S+) / seed (\d+): epoch 1/", log))


def results(root: Path, method: str = "*") -> list:
    return sorted(root.glob(f"smoke/{method}/*/seed-*.json"))


SHORT = ["--set", "coop.train.epochs=1", "--set", "maple.train.epochs=1", "--set", "ivlp.train.epochs=1"]  # who runs
# a cell is what these tests check, not how well it trains


def test_concurrent_runs_train_every_cell_exactly_once(tmp_path, env, processes=3):
    args = ["run", "--protocol", "smoke", "--method", "coop", "maple", "ivlp", "--seeds", "1", "2", *SHORT,
            "--no-progress", "--threads", "1", "--results-dir", str(tmp_path / "results")]
    runs = [bench_process(args, env, tmp_path) for _ in range(processes)]
    logs = [run.communicate(timeout=600)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), logs
    starts = training_starts("".join(logs))
    assert starts == {(m, s): 1 for m in ("coop", "maple", "ivlp") for s in ("1", "2")}
    assert len(results(tmp_path / "results")) == 6
    assert sum(log.count("running elsewhere") + log.count("done already") for log in logs) >= 6 * (processes - 1)
    assert not list((tmp_path / "results").rglob("*.lease*"))  # every lease and takeover marker released


def test_workers_run_each_cell_once_and_a_relaunch_runs_only_what_is_missing(tmp_path, env, capsys):
    args = ["run", "--protocol", "smoke", "--method", "coop", "maple", "--seeds", "1", "2", "--workers", "2", *SHORT[:4],
            "--devices", "cpu", "--results-dir", str(tmp_path / "results")]
    log = bench_process(args, env, tmp_path).communicate(timeout=600)[0]
    assert "bench: 4 cells: 4 ran" in log and "[w0]" in log and "[w1]" in log, log
    assert training_starts(log) == {(m, s): 1 for m in ("coop", "maple") for s in ("1", "2")}
    lost = results(tmp_path / "results", "maple")[0]
    lost.unlink()  # as after a crash: one cell is missing
    one = [a for i, a in enumerate(args) if not {i, i - 1} & {args.index("--workers"), args.index("--devices")}]
    assert main(one) == 0  # the relaunch, in this process: two workers would share its one cell
    log = "".join(capsys.readouterr())
    assert "bench: 4 cells: 1 ran, 3 done before" in log, log
    written = re.findall(r"smoke / (\S+) / seed (\d+): all [\d.]+, [\d.]+s -> ", log)
    assert len(written) == 1 and written[0][0] == "maple" and lost.exists(), log  # resumed from its last checkpoint
    assert not training_starts(log)


def test_a_worker_killed_mid_cell_is_taken_over_and_ends_as_an_uninterrupted_run(tmp_path, env, capsys):
    args = ["run", "--protocol", "smoke", "--method", "coop", "--seeds", "1", "--set", "coop.train.epochs=6",
            "--no-progress", "--threads", "1"]
    run = bench_process([*args, "--results-dir", str(tmp_path / "killed")], env, tmp_path)
    for line in run.stdout:
        if ": epoch 3/6" in line:
            run.send_signal(signal.SIGKILL)  # mid-cell: three epochs checkpointed, the lease left behind
            break
    run.wait(timeout=60)
    lease, = (tmp_path / "killed").rglob("seed-1.lease")
    assert not results(tmp_path / "killed")
    assert main([*args, "--results-dir", str(tmp_path / "killed")]) == 0  # its holder is gone: taken over
    assert main([*args, "--results-dir", str(tmp_path / "whole")]) == 0
    resumed, whole = (json.loads(results(tmp_path / d)[0].read_text()) for d in ("killed", "whole"))
    assert resumed["metrics"] == whole["metrics"] and resumed["per_class_accuracy"] == whole["per_class_accuracy"]
    assert not lease.exists() and not list((tmp_path / "killed").rglob("*.takeover-*"))


def test_a_failed_cell_is_recorded_the_others_go_on_and_retry_failed_runs_it_again(tmp_path, capsys, monkeypatch,
                                                                                     new_process):
    plugin, flag = tmp_path / "flaky.py", tmp_path / "fail-now"
    plugin.write_text(FLAKY)
    flag.touch()
    monkeypatch.setenv("BENCH_TEST_FLAG", str(flag))
    args = ["run", "--plugin", str(plugin), "--protocol", "smoke", "--method", "flaky", "coop", "--seeds", "1",
            "--results-dir", str(tmp_path / "results")]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "bench: 2 cells: 1 ran, 1 failed; bench status lists the errors" in out
    failure, = (tmp_path / "results").rglob("seed-1.failed")
    assert json.loads(failure.read_text())["error"] == "RuntimeError: the flag file is there"
    assert "Traceback" in failure.with_name("seed-1.traceback.txt").read_text()
    status = ["status", "--plugin", str(plugin), "--protocol", "smoke", "--method", "flaky", "coop", "--seeds", "1",
              "--results-dir", str(tmp_path / "results")]
    assert main(status) == 0
    out = capsys.readouterr().out
    assert "| smoke | flaky | 0 | 0 | 0 | 1 | 0 |" in out and "| smoke | coop | 1 | 0 | 0 | 0 | 0 |" in out
    assert "failed   smoke / flaky / seed 1: RuntimeError: the flag file is there" in out
    flag.unlink()
    assert main(args) == 0 and "1 done before, 1 failed before" in capsys.readouterr().out
    assert main([*args, "--retry-failed"]) == 0 and "1 ran, 1 done before" in capsys.readouterr().out
    assert not failure.exists() and len(results(tmp_path / "results")) == 2


def test_damaged_and_foreign_leases_are_handled_with_a_warning(tmp_path, capsys):
    args = ["run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1",
            "--results-dir", str(tmp_path / "results"), "--lease-timeout", "60"]
    assert main(args) == 0
    result = results(tmp_path / "results")[0]
    lease = result.with_name("seed-1.lease")
    long_ago = time.time() - 3600

    def again(content, mtime=None):
        result.unlink(missing_ok=True)
        lease.write_text(content)
        if mtime:
            os.utime(lease, (mtime, mtime))
        code = main(args)
        return code, *capsys.readouterr()

    capsys.readouterr()
    foreign = json.dumps({"host": "node-17", "pid": 4242, "job": "991_3", "token": "t1", "since": "earlier"})
    code, out, err = again(foreign)  # heard from just now: another machine is on it
    assert code == 0 and "running elsewhere (node-17 pid 4242, job 991_3" in out and not result.exists()
    assert main(["status", *args[1:]]) == 0
    assert re.search(r"running  smoke / zeroshot / seed 1: node-17 pid 4242, job 991_3, \d+ s since heard",
                     capsys.readouterr().out)
    code, out, err = again(foreign, long_ago)  # silent for an hour: taken over, with a warning
    assert code == 0 and result.exists() and "lease" in err and "node-17" in err and "went silent" in err
    code, out, err = again("{torn", long_ago)
    assert code == 0 and result.exists() and "is damaged" in err
    assert not lease.exists()


def test_plan_counts_cells_and_estimates_hours_from_finished_ones(tmp_path, capsys):
    root = str(tmp_path / "results")
    assert main(["run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "--results-dir", root]) == 0
    capsys.readouterr()
    assert main(["plan", "--protocol", "smoke", "--method", "zeroshot", "coop", "--results-dir", root]) == 0
    out = capsys.readouterr().out
    assert "| smoke | zeroshot | 1 | 0 | 0 | 0 | 2 |" in out and "| smoke | coop | 0 | 0 | 0 | 0 | 3 |" in out
    assert "| all | 2 rows | 1 | 0 | 0 | 0 | 5 |" in out
    assert re.search(r"estimate: \d+\.\d\d hours for 2 of 5 cells not done \(CPU timings only for smoke/zeroshot\); "
                     r"no comparable timing \(.*\) for 3 cells: smoke/coop \(3\)", out)


def test_plan_estimates_only_from_cells_of_the_same_dataset_and_backbone(tmp_path, capsys):
    """Finished smoke cells (a tiny synthetic dataset) give no estimate for CIFAR cells of the same family."""
    root = str(tmp_path / "results")
    assert main(["run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "--results-dir", root]) == 0
    capsys.readouterr()
    assert main(["plan", "--protocol", "cifar100_lt_ir*", "--method", "zeroshot", "--results-dir", root]) == 0
    out = capsys.readouterr().out
    estimate = out.splitlines()[-1]
    assert estimate.startswith("estimate: no comparable timing") and "cifar100_lt_ir100/zeroshot" in estimate
    assert "hours" not in estimate
    assert main(["plan", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "--results-dir", root]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "estimate: every cell is done"


def test_plan_and_status_take_a_gpu_device_on_a_machine_without_one_and_see_its_keys(tmp_path, capsys, monkeypatch):
    """A login node without a GPU plans what a GPU job array runs: its keys carry the GPU's precision."""
    import torch

    from bench.config.protocol import load_protocol
    from bench.engine.runner import RunOptions, Runner

    root = str(tmp_path / "results")
    assert main(["run", "--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "--device", "cpu",
                 "--results-dir", root]) == 0
    capsys.readouterr()
    base = ["--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "--results-dir", root]
    assert main(["status", *base, "--device", "cpu"]) == 0
    assert "| smoke | zeroshot | 1 | 0 | 0 | 0 | 0 |" in capsys.readouterr().out
    assert main(["plan", *base, "--device", "cuda"]) == 0  # the README's example: no GPU needed
    assert "| smoke | zeroshot | 0 | 0 | 0 | 0 | 1 |" in capsys.readouterr().out  # a GPU cell is another cell
    assert main(["status", *base, "--device", "cuda:1", "--amp-dtype", "fp16"]) == 0
    capsys.readouterr()
    smoke = load_protocol("smoke", {})
    planned = {dtype: Runner(smoke, RunOptions(device="cuda", keys_only=dtype)).plan(["coop"], [1])[0].key
               for dtype in ("auto", "bf16", "fp16")}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what a run on an A100 computes
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    on_gpu = Runner(smoke, RunOptions(device="cuda")).plan(["coop"], [1])[0].key
    assert planned["auto"] == planned["bf16"] == on_gpu != planned["fp16"]


def test_a_slurm_job_array_runs_every_cell_through_submitit(tmp_path, capsys):
    """submitit's local executor (a subprocess per array task) stands in for SLURM."""
    pytest.importorskip("submitit", reason="submitit is the [slurm] extra")
    root = tmp_path / "results"
    args = ["run", "--protocol", "smoke", "--method", "coop", "maple", "--seeds", "1", "2", "--results-dir", str(root),
            *SHORT[:4], "--launcher", "slurm", "--slurm-cluster", "local", "--slurm-array", "2", "--slurm-gpus", "0",
            "--slurm-option", "account=lt-bench"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "bench: submitted 2 array task(s)" in out and "bench: 4 cells: 4 ran" in out
    assert len(results(root)) == 4
    note, = root.glob(".slurm/*/launch.json")
    launched = json.loads(note.read_text())
    assert launched["profile"]["sbatch"] == {"account": "lt-bench"} and len(launched["jobs"]) == 2
    logs = "".join(p.read_text() for p in note.parent.rglob("*_log.out"))
    assert sum(training_starts(logs).values()) == 4  # each cell trained once, by one of the two tasks
    assert main(["status", "--protocol", "smoke", "--method", "coop", "maple", "--seeds", "1", "2", *SHORT[:4],
                 "--results-dir", str(root)]) == 0
    assert f"logs in {note.parent}" in capsys.readouterr().out


def test_a_failed_slurm_task_names_its_error_and_err_log_and_status_lists_its_cells_failed(tmp_path, capsys,
                                                                                         monkeypatch, new_process):
    """A task that dies (a plugin whose dependency the nodes lack) is one error line naming its own error and
    its .err log, where the traceback is; `bench status` then lists the launch's cells as failed."""
    pytest.importorskip("submitit", reason="submitit is the [slurm] extra")
    plugin = tmp_path / "node_only.py"
    plugin.write_text("import os\n\nif 'SUBMITIT_LOCAL_JOB_ID' in os.environ:  # inside an array task\n"
                      "    raise ImportError('no module named site_lib on this node')\n" + FLAKY)
    monkeypatch.setenv("BENCH_PLUGINS", "")  # the launch names the plugin there for its tasks: put back after
    root = tmp_path / "results"
    select = ["--protocol", "smoke", "--method", "zeroshot", "--seeds", "1", "--results-dir", str(root)]
    err = one_error(capsys, "run", *select, "--plugin", str(plugin), "--device", "cpu", "--launcher", "slurm",
                    "--slurm-cluster", "local", "--slurm-array", "1")
    log = re.search(r"traceback is in (\S+_log\.err)", err)
    assert "SLURM task 0" in err and "no module named site_lib on this node" in err and log, err
    assert "no module named site_lib" in Path(log.group(1)).read_text()
    note, = root.glob(".slurm/*/launch.json")
    assert json.loads(note.read_text())["profile"]["gpus"] == 0  # --device cpu: CPU tasks, no --slurm-gpus 0 needed
    assert main(["status", *select]) == 0
    out = capsys.readouterr().out
    assert "| smoke | zeroshot | 0 | 0 | 0 | 1 | 0 |" in out
    assert "FAILED: 1 task(s); task 0: " in out and log.group(1) in out and "launch again" in out
    assert "failed   smoke / zeroshot / seed 1: its SLURM launch" in out
    from bench.launch.slurm import last_error  # no note (the logs folder not shared): submitit's own message

    assert last_error("Job (task=0) failed during processing with trace:\n---\nTraceback ...\nValueError: x\n---\n"
                      "You can check full logs ... at paths:\n  - /a/1_0_log.err\n  - /a/1_0_log.out") == "ValueError: x"


@pytest.mark.parametrize("extra, problem", [
    (["--device", "cpu", "--slurm-gpus", "1"], "--device cpu asks for CPU tasks, but each task gets 1 GPU(s)"),
    (["--device", "cuda", "--slurm-gpus", "0"], "--device cuda asks for GPU tasks, but --slurm-gpus"),
])
def test_slurm_tasks_follow_device_and_a_contradiction_is_one_error(tmp_path, capsys, extra, problem):
    pytest.importorskip("submitit", reason="submitit is the [slurm] extra")
    err = one_error(capsys, "run", "--protocol", "smoke", "--method", "zeroshot", "--results-dir", str(tmp_path),
                    "--launcher", "slurm", "--slurm-cluster", "local", *extra)
    assert problem in err and not (tmp_path / ".slurm").exists()


def test_slurm_input_errors_are_one_line_before_anything_is_submitted(tmp_path, capsys, monkeypatch):
    base = ["run", "--protocol", "smoke", "--method", "coop", "--results-dir", str(tmp_path), "--launcher", "slurm"]
    profile = tmp_path / "profile.yaml"
    profile.write_text("partiton: gpu\n")
    assert "slurm.partiton: unknown field; did you mean 'partition'?" in one_error(capsys, *base, "--slurm-profile",
                                                                                   str(profile))
    assert "expected an sbatch option as NAME=VALUE" in one_error(capsys, *base, "--slurm-option", "qos high")
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if the [slurm] extra were not installed
    assert "pip install -e '.[slurm]'" in one_error(capsys, *base)
    assert not (tmp_path / ".slurm").exists()


def test_an_array_task_on_a_node_without_the_results_folder_stops_and_a_requeued_one_resumes(tmp_path, monkeypatch):
    from bench.core.errors import BenchError
    from bench.engine.lease import acquire
    from bench.launch.slurm import ArrayTask

    task = ArrayTask(selection=type("S", (), {"options": type("O", (), {"results_dir": tmp_path})()})(),
                     index=0, tasks=1, probe=str(tmp_path / ".probe-x"), device="cpu")
    with pytest.raises(BenchError, match="not the one the job was submitted from"):
        task()
    if importlib.util.find_spec("submitit"):
        assert task.checkpoint().function is task  # preempted or timed out: the same task is requeued
    # a requeued task (same array job and task, another node) takes its own lease back at once
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    lease = tmp_path / "seed-1.lease"
    for job, taken in (("77_4", False), ("77_3", True)):
        lease.write_text(json.dumps({"host": "node-9", "pid": 1, "job": job, "token": job, "since": "now"}))
        held = acquire(lease, stale_after=600)
        assert (held is not None) == taken
        if held is not None:
            held.release()


def one_error(capsys, *argv) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("bench: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("extra, problem", [
    (["--workers", "0"], "--workers: expected a whole number from 1 to 1024"),
    (["--workers", "2", "--devices", "7"], "--device cuda:7: "),  # no CUDA here, or fewer GPUs
    (["--workers", "2", "--devices", "0,,1"], "--devices '0,,1': expected GPU indices"),
])
def test_bad_worker_settings_are_one_line_before_any_worker_starts(tmp_path, capsys, extra, problem):
    err = one_error(capsys, "run", "--protocol", "smoke", "--method", "coop", "--results-dir", str(tmp_path), *extra)
    assert problem in err and not list(tmp_path.rglob("seed-*"))


def sweep_spec(tmp_path) -> str:
    """Three coop settings on smoke, seed 1, one selection each; 'default' and 'csc off' are one cell."""
    path = tmp_path / "sweep.yaml"
    one = {"train.epochs": 1}
    path.write_text(json.dumps({"title": "T", "columns": ["smoke"], "metrics": ["all"], "seeds": [1], "rows": [
        {"method": "coop", "label": "default", "set": one},
        {"method": "coop", "label": "csc off", "set": {**one, "csc": False}},
        {"method": "coop", "label": "short", "set": {**one, "n_ctx": 2}}]}))
    return str(path)


@pytest.fixture
def backbones_built(monkeypatch) -> list:
    """The ProtocolResources (by id) that built a backbone in this process."""
    from bench.engine.resources import ProtocolResources

    built, real = [], ProtocolResources.backbone
    monkeypatch.setattr(ProtocolResources, "backbone", lambda self: (built.append(id(self)), real(self))[1])
    return built


def test_a_reports_selections_share_one_backbone_and_count_each_cell_once(tmp_path, capsys, backbones_built):
    root = str(tmp_path / "results")
    assert main(["run", "--report", sweep_spec(tmp_path), "--results-dir", root, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bench: 2 cells: 2 ran\n" in out and "bench: running" not in out  # one protocol, three selections
    assert len(set(backbones_built)) == 1 and len(results(tmp_path / "results")) == 2


def test_a_reports_selections_are_one_worker_launch(tmp_path, env):
    args = ["run", "--report", sweep_spec(tmp_path), "--workers", "2", "--devices", "cpu", "--threads", "1",
            "--results-dir", str(tmp_path / "results")]
    log = bench_process(args, env, tmp_path).communicate(timeout=600)[0]
    assert log.count("bench: 2 workers finished") == 1 and "bench: 2 cells: 2 ran\n" in log, log
    assert sum(training_starts(log).values()) == 2 and len(results(tmp_path / "results")) == 2


def test_a_reports_selections_are_one_slurm_array_sharing_a_backbone(tmp_path, capsys, backbones_built):
    """submitit's debug executor runs the task in this process, so the backbones it builds are counted."""
    pytest.importorskip("submitit", reason="submitit is the [slurm] extra")
    root = tmp_path / "results"
    args = ["run", "--report", sweep_spec(tmp_path), "--results-dir", str(root), "--launcher", "slurm",
            "--slurm-cluster", "debug", "--slurm-array", "1", "--slurm-gpus", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("bench: submitted 1 array task(s)") == 1 and "bench: 2 cells: 2 ran\n" in out, out
    note, = root.glob(".slurm/*/launch.json")
    assert json.loads(note.read_text())["protocols"] == ["smoke"]
    assert len(set(backbones_built)) == 1 and len(results(root)) == 2
