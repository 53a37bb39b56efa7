"""SLURM job arrays through submitit: each array task is a worker pulling cells through their leases.

submitit (``pip install -e '.[slurm]'``) writes the sbatch scripts, submits one job array, and
requeues a task on preemption or time-out (``Checkpointable``); the requeued task keeps its job id,
so it takes its own leases back at once and resumes each cell from its last per-epoch checkpoint::

    profile = SlurmProfile(partition="gpu", time_min=240, gpus=1, cpus=8, array=16)
    jobs = submit(selection, profile, logs=Path("results/.slurm/20261202-0830"))
"""
from __future__ import annotations

import datetime
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional


from bench.core.safeyaml import load_json
from bench.core.coerce import from_dict
from bench.core.errors import BenchError, ConfigError, one_line, reason
from bench.core.safeyaml import load_yaml
from .workers import Selection, work

INSTALL = "--launcher slurm needs submitit: pip install -e '.[slurm]' (or pip install submitit)"


@dataclass
class SlurmProfile:
    """What each array task asks SLURM for (``--slurm-profile FILE`` holds the same keys in YAML)."""

    partition: Optional[str] = None
    time_min: int = field(default=240, metadata={"min": 1, "max": 60 * 24 * 30})  # per task; requeued at the limit
    gpus: int = field(default=1, metadata={"min": 0, "max": 64})  # per task (one worker per task)
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
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise BenchError(f"--slurm-profile '{path}': cannot read it ({reason(err)})") from None
        data = load_yaml(text, f"--slurm-profile '{path}'") or {}
        if not isinstance(data, dict):
            raise BenchError(f"--slurm-profile '{path}': expected a mapping of {', '.join(f.name for f in fields(SlurmProfile))}")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return from_dict(SlurmProfile, data, "slurm")


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

    def __init__(self, selection: Selection, index: int, tasks: int, probe: str, device: str):
        self.selection, self.index, self.tasks, self.probe, self.device = selection, index, tasks, probe, device

    def __call__(self) -> List[tuple]:
        if not Path(self.probe).exists():
            raise BenchError(f"the results folder '{self.selection.options.results_dir}' is not the one the job "
                             f"was submitted from (no '{Path(self.probe).name}' there): give --results-dir a "
                             "folder every node shares")
        return work(self.selection, self.device, self.index, self.tasks)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self)  # the cells resume from their own checkpoints


def submit(selection: Selection, profile: SlurmProfile, logs: Path) -> list:
    """Submit the selection as one job array; returns submitit's jobs (``bench status`` follows the
    cells; ``logs`` holds each task's output and a note of what was launched)."""
    ex = executor(profile, logs)
    results = Path(selection.options.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    probe = results / f".probe-{logs.name}"
    probe.write_text(str(logs))  # each task checks that it sees this file: the folder is shared
    device = "cuda" if profile.gpus else "cpu"
    try:
        with ex.batch():
            jobs = [ex.submit(ArrayTask(selection, i, profile.array, str(probe.resolve()), device))
                    for i in range(profile.array)]
    except Exception as err:  # noqa: BLE001  (sbatch refused it: an unknown option, partition or account)
        probe.unlink()
        lines = [line for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        raise BenchError(f"SLURM refused the job array: {one_line(lines[-1])}") from None
    note = {"submitted": datetime.datetime.now().isoformat(timespec="seconds"), "jobs": [j.job_id for j in jobs],
            "logs": str(logs.resolve()), "profile": asdict(profile), "protocols": selection.names,
            "methods": selection.methods, "host": os.uname().nodename}
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "launch.json").write_text(json.dumps(note, indent=2))
    return jobs


def task_outcomes(jobs: list) -> Counter:
    """Wait for the tasks (submitit's local and debug executors) and merge what they did with each cell."""
    from .workers import merge

    try:
        return merge(job.result() for job in jobs)
    except Exception as err:  # noqa: BLE001  (a task's own error, raised again by submitit with its log)
        raise BenchError(f"a SLURM task failed: {one_line(str(err).strip().splitlines()[-1])}") from None


def launches(results: Path, last: int = 3) -> List[str]:
    """One line per recent job-array launch into ``results`` (for `bench status`): jobs and log folder."""
    notes = sorted((results / ".slurm").glob("*/launch.json"))[-last:]
    lines = []
    for path in notes:
        try:
            note = load_json(path.read_text())
        except (OSError, ValueError):
            continue
        lines.append(f"slurm {note.get('submitted')}: {len(note.get('jobs', []))} task(s) of job "
                     f"{str(note.get('jobs', ['?'])[0]).split('_')[0]}, logs in {path.parent}")
    return lines
