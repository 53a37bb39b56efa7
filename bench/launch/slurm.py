"""SLURM job arrays through submitit: each array task is a worker pulling cells through their leases.

submitit (``pip install -e '.[slurm]'``) writes the sbatch scripts, submits one job array, and
requeues a task on preemption or time-out (``Checkpointable``); the requeued task keeps its job id,
so it takes its own leases back at once and resumes each cell from its last per-epoch checkpoint::

    profile = SlurmProfile(partition="gpu", time_min=240, gpus=1, cpus=8, array=16)
    jobs = submit(selection, profile, logs=Path("results/.slurm/20261202-0830"))

A task that fails leaves ``task-<index>.failed.json`` (its one-line error and its ``.err`` log) in the
launch's log folder: the submitter's error and `bench status` name both.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import os
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple


from bench.core.safeyaml import load_json
from bench.core.coerce import from_dict
from bench.core.atomic import write_json
from bench.core.errors import BenchError, ConfigError, one_line, warn
from bench.core.namedfiles import read_named_text
from bench.core.safeyaml import load_yaml
from .workers import Selection, work

INSTALL = "--launcher slurm needs submitit: pip install -e '.[slurm]' (or pip install submitit)"


@dataclass
class SlurmProfile:
    """What each array task asks SLURM for (``--slurm-profile FILE`` holds the same keys in YAML)."""

    partition: Optional[str] = None
    time_min: int = field(default=240, metadata={"min": 1, "max": 60 * 24 * 30})  # per task; requeued at the limit
    gpus: Optional[int] = field(default=None, metadata={"min": 0, "max": 64})  # per task; None: --device's (0 or 1)
    cpus: int = field(default=8, metadata={"min": 1, "max": 1024})
    mem_gb: Optional[float] = None
    array: int = field(default=8, metadata={"min": 1, "max": 100_000})  # tasks in the array
    parallel: Optional[int] = None  # tasks running at once (default: all)
    sbatch: Dict[str, str] = field(default_factory=dict)  # extra sbatch options: {"account": "abc", "qos": "high"}
    cluster: Optional[str] = None  # submitit's: None (SLURM), "local" (subprocesses) or "debug" (in this process)


def load_profile(path: Optional[str], overrides: Dict[str, object]) -> SlurmProfile:
    """The profile file's keys, then the command line's (``--slurm-*``), each checked."""
    data: Dict[str, object] = {}
    if path is not None:
        text = read_named_text(path, "--slurm-profile", hint="it must be a small YAML file of "
                               f"{', '.join(f.name for f in fields(SlurmProfile))}")
        data = load_yaml(text, f"--slurm-profile '{path}'") or {}
        if not isinstance(data, dict):
            raise BenchError(f"--slurm-profile '{path}': expected a mapping of {', '.join(f.name for f in fields(SlurmProfile))}")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return from_dict(SlurmProfile, data, "slurm")


def task_device(profile: SlurmProfile, device: str) -> Tuple[SlurmProfile, str]:
    """The profile with its GPUs per task and the device each task runs on, following ``--device``:
    cpu means no GPU, cuda at least one, auto the profile's (default 1); a contradiction is an error."""
    gpus = profile.gpus if profile.gpus is not None else 0 if device == "cpu" else 1
    if device == "cpu" and gpus:
        raise BenchError(f"--device cpu asks for CPU tasks, but each task gets {gpus} GPU(s) (--slurm-gpus or the "
                         "profile's gpus): give --slurm-gpus 0, or --device cuda")
    if device.startswith("cuda") and not gpus:
        raise BenchError(f"--device {device} asks for GPU tasks, but --slurm-gpus (or the profile's gpus) is 0: "
                         "give --slurm-gpus 1 or more, or --device cpu")
    return replace(profile, gpus=gpus), "cuda" if gpus else "cpu"


def executor(profile: SlurmProfile, logs: Path):
    """A submitit executor set up from ``profile``; an option SLURM does not know is one error line."""
    try:
        import submitit
    except ImportError:
        raise BenchError(INSTALL) from None
    ex = submitit.AutoExecutor(folder=str(logs), cluster=profile.cluster)
    params = {"timeout_min": profile.time_min, "gpus_per_node": profile.gpus, "cpus_per_task": profile.cpus,
              "mem_gb": profile.mem_gb, "slurm_partition": profile.partition, "name": "bench",
              "slurm_array_parallelism": profile.parallel or profile.array,
              "slurm_additional_parameters": dict(profile.sbatch) or None}
    try:
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    except (NameError, AssertionError, ValueError) as err:
        raise ConfigError("slurm", one_line(str(err).splitlines()[0])) from None
    return ex


class ArrayTask:
    """One array task: probes that the results folder is the submitter's, then works like a local
    worker; submitit calls ``checkpoint`` on preemption or time-out and requeues the same task."""

    def __init__(self, selection: Selection, index: int, tasks: int, probe: str, device: str, logs: str = ""):
        self.selection, self.index, self.tasks, self.probe, self.device = selection, index, tasks, probe, device
        self.logs = logs

    def __call__(self) -> List[tuple]:
        try:
            if not Path(self.probe).exists():
                raise BenchError(f"the results folder '{self.selection.options.results_dir}' is not the one the "
                                 f"job was submitted from (its launch note '{self.probe}' is not there): give "
                                 "--results-dir a folder every node shares")
            return work(self.selection, self.device, self.index, self.tasks)
        except Exception as err:
            self.note_failure(err)
            raise

    def note_failure(self, err: Exception) -> None:
        """``task-<index>.failed.json`` beside the logs: the error in one line and the ``.err`` log's path
        (the traceback is there), for the submitter and `bench status`."""
        try:
            import submitit

            log = str(submitit.JobEnvironment().paths.stderr)
        except Exception:  # noqa: BLE001  (not inside a submitit job: the debug executor)
            log = ""
        error = str(err) if isinstance(err, BenchError) else f"{type(err).__name__}: {err}"
        note = {"task": self.index, "error": one_line(error.strip() or type(err).__name__), "log": log}
        if self.logs:
            with contextlib.suppress(OSError):  # the folder is not shared: the .err log still says it
                write_json(Path(self.logs) / f"task-{self.index}.failed.json", note)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self)  # the cells resume from their own checkpoints


def submit(selection: Selection, profile: SlurmProfile, logs: Path, keys: Optional[List[str]] = None) -> list:
    """Submit the selection as one job array; returns submitit's jobs (``bench status`` follows the
    cells; ``logs`` holds each task's output and a note of what was launched: ``keys``, the keys of its
    cells, tell its configuration from another of the same protocol and method)."""
    profile, device = task_device(profile, str(selection.options.device))
    ex = executor(profile, logs)
    logs.mkdir(parents=True, exist_ok=True)  # under the results folder: the launch's own files, nothing beside
    note = {"submitted": datetime.datetime.now().isoformat(timespec="seconds"), "jobs": [],
            "logs": str(logs.resolve()), "profile": asdict(profile), "protocols": selection.names,
            "methods": selection.methods, "host": os.uname().nodename, **({"keys": keys} if keys else {})}
    probe = logs / "launch.json"
    write_json(probe, note)  # before the tasks start: each checks that it sees this file (the folder is shared)
    try:
        with ex.batch():
            jobs = [ex.submit(ArrayTask(selection, i, profile.array, str(probe.resolve()), device,
                                        str(logs.resolve()))) for i in range(profile.array)]
    except Exception as err:  # noqa: BLE001  (sbatch refused it: an unknown option, partition or account)
        probe.unlink()
        lines = [line for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        raise BenchError(f"SLURM refused the job array: {one_line(lines[-1])}") from None
    write_json(probe, {**note, "jobs": [j.job_id for j in jobs]})  # atomic: a task never finds it missing
    return jobs


def task_outcomes(jobs: list, logs: Path) -> Counter:
    """Wait for the tasks (submitit's local and debug executors) and merge what they did with each cell.
    A task that failed or was killed is one error line (its error or the signal, and its log), unless
    another task finished: each task goes through the whole plan, waiting out cells others hold and
    taking over those a dead task leaves, so every cell has ended anyway, and the failure is a warning."""
    from .workers import merge

    reports, failures = [], []
    for index, job in enumerate(jobs):
        try:
            reports.append(job.result())
        except Exception as err:  # noqa: BLE001  (a task's own error, raised again by submitit, or its death)
            failures.append(task_failure(job, index, logs, err))
    if failures and not reports:
        raise BenchError(failures[0])
    for failure in failures:
        warn(f"{failure}; another task went through every cell, so none is left undone")
    return merge(reports)


def task_failure(job, index: int, logs: Path, err: Exception) -> str:
    """What happened to a task that left no result: its own error (the note it left, or submitit's
    message) and its ``.err`` log, or that it was killed (its note is then written here, for `bench status`)."""
    paths = getattr(job, "paths", None)
    if was_killed(err):
        note = {"task": index, "error": killed_error(getattr(job, "state", "")),
                "log": str(getattr(paths, "stdout", "")), "killed": True}
        with contextlib.suppress(OSError):
            write_json(logs / f"task-{index}.failed.json", note)
        return f"SLURM task {index} (job {job.job_id}) was {note['error']}; its last output is in {note['log']}"
    note = task_failures(logs).get(index) or {"error": last_error(str(err))}
    log = note.get("log") or str(getattr(paths, "stderr", "")) or "its .err file"
    return f"SLURM task {index} (job {job.job_id}) failed: {note['error']}; the traceback is in {log}"


def was_killed(err: Exception) -> bool:
    """Whether a task ended without any result: killed by a signal before Python could say why (submitit
    raises UncompletedJobError then; FailedJobError, its subclass, carries the task's own traceback)."""
    try:
        from submitit.core.utils import FailedJobError, UncompletedJobError
    except ImportError:
        return False
    return isinstance(err, UncompletedJobError) and not isinstance(err, FailedJobError)


def killed_error(state: str = "", exit_code: str = "") -> str:
    """``killed by SIGKILL (SLURM state OUT_OF_MEMORY)``: from the job's state and ``signal`` part of
    its exit code where SLURM gives them (a local executor's task says only that it ended)."""
    number = exit_code.partition(":")[2]
    by = "a signal"
    with contextlib.suppress(ValueError):
        by = signal.Signals(int(number)).name if int(number) else by
    if state and state.split()[0] not in ("FINISHED", "UNKNOWN", "RUNNING"):  # a local task's says nothing
        return f"killed by {by} (job state {state}) before it could record an error"
    return (f"killed by {by} before it could record an error (scancel, the out-of-memory killer, a node failure "
            "or the time limit)")


def last_error(message: str) -> str:
    """The error line of a task's traceback as submitit reports it (between dashed lines, above the paths of
    its logs), or the message's last line."""
    lines = [line for line in message.splitlines() if line.strip()]
    dashes = [i for i, line in enumerate(lines) if set(line.strip()) == {"-"}]
    return one_line(lines[dashes[-1] - 1] if len(dashes) >= 2 else lines[-1] if lines else "no message")


def task_failures(logs: Path) -> Dict[int, dict]:
    """Task index -> the failure note it left in ``logs`` (:meth:`ArrayTask.note_failure`)."""
    found = {}
    for path in sorted(logs.glob("task-*.failed.json")):
        try:
            note = load_json(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(note, dict) and isinstance(note.get("task"), int) and note.get("error"):
            found[note["task"]] = note
    return found


def launch_failures(folder: Path, note: dict) -> Dict[int, dict]:
    """Task index -> why it failed: the notes its tasks (or the submitter) left, and the tasks SLURM's
    accounting says ended without a result (killed outright: out of memory, scancel, a node failure)."""
    return {**ended_without_result(folder, tuple(str(job) for job in note.get("jobs") or [])),
            **task_failures(folder)}


@functools.lru_cache(maxsize=None)
def ended_without_result(folder: Path, jobs: Tuple[str, ...]) -> Dict[int, dict]:
    """The tasks of ``jobs`` with no result in ``folder`` that ``sacct`` (where there is one) says ended,
    each with its state and signal; once per launch and process."""
    waiting = {index: job for index, job in enumerate(jobs) if not any(folder.glob(f"{job}_*_result.pkl"))}
    if not waiting or shutil.which("sacct") is None:
        return {}
    arrays = sorted({job.split("_")[0] for job in waiting.values()})
    try:
        listed = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", ",".join(arrays)],
                                capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    ended = {}
    for line in listed.splitlines():
        job, state, code = (line.split("|") + ["", ""])[:3]
        ended[job.strip()] = (state.strip(), code.strip())
    return {index: accounting_note(index, folder / job, *ended[job])
            for index, job in waiting.items() if job in ended and ended[job][0].split(" ")[0] in UNFINISHED}


UNFINISHED = ("CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "FAILED", "TIMEOUT", "BOOT_FAIL", "DEADLINE", "PREEMPTED")


def accounting_note(index: int, logs: Path, state: str, exit_code: str) -> dict:
    """A task's failure note from SLURM's accounting: killed (a signal, or a state such as OUT_OF_MEMORY),
    or failed with an exit code and no note of its own (its .err log has the traceback)."""
    status, _, number = exit_code.partition(":")
    if state.startswith("FAILED") and number in ("", "0"):
        return {"task": index, "error": f"failed with exit code {status or '?'} (SLURM state FAILED)",
                "log": f"{logs}_0_log.err"}
    return {"task": index, "error": killed_error(state, exit_code), "log": f"{logs}_0_log.out", "killed": True}


def launched(note: dict, state) -> bool:
    """Whether the launch of ``note`` ran ``state``'s cell: its protocol and method, and its key where
    the launch noted its keys (a launch with other --set values is another configuration)."""
    return (state.protocol in (note.get("protocols") or []) and state.method in (note.get("methods") or [])
            and ("keys" not in note or state.key in note["keys"]))


def launch_notes(results: Path) -> List[Tuple[Path, dict]]:
    """Every job-array launch into ``results``, oldest first: its log folder and its ``launch.json``."""
    found = []
    for path in sorted((results / ".slurm").glob("*/launch.json")):
        try:
            note = load_json(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(note, dict):
            found.append((path.parent, note))
    return found


def launches(results: Path, last: int = 3) -> List[str]:
    """One line per recent job-array launch into ``results`` (for `bench status`): jobs and log folder,
    and the first failed task's error and log."""
    lines = []
    for folder, note in launch_notes(results)[-last:]:
        jobs = note.get("jobs") or ["?"]
        line = (f"slurm {note.get('submitted')}: {len(jobs)} task(s) of job {str(jobs[0]).split('_')[0]}, "
                f"logs in {folder}")
        failed = launch_failures(folder, note)
        lines.append(line + (f"; {failure_text(failed, folder)}" if failed else ""))
    return lines


def failure_text(failed: Dict[int, dict], folder: Path) -> str:
    """``FAILED: 1 task(s); task 0: <its error> (traceback in <its .err log>)``."""
    index, note = min(failed.items())
    where = "its last output in" if note.get("killed") else "traceback in"
    return f"FAILED: {len(failed)} task(s); task {index}: {note['error']} ({where} {note.get('log') or folder})"


def mark_failed_launches(states: list, results: Path) -> int:
    """`bench status`: the cells not done or running whose newest launch had a task fail are failed,
    with that launch's error; how many were marked."""
    notes = launch_notes(results)[::-1]  # newest first
    failures: Dict[Path, dict] = {}
    marked = 0
    for state in states:
        if state.state not in ("to do", "stale"):
            continue
        folder, note = next(((f, n) for f, n in notes if launched(n, state)), (None, {}))
        if folder is not None and folder not in failures:
            failures[folder] = launch_failures(folder, note)
        if failures.get(folder):
            state.state, marked = "failed", marked + 1
            state.detail = f"its SLURM launch ({note.get('submitted')}) failed: its error and log are below"
    return marked
