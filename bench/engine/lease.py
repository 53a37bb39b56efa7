"""Leases: one holder per cell at a time, across processes, machines and launches.

A lease is ``seed-<seed>.lease`` beside the cell's result, made with an atomic exclusive create on the
shared results file system.  It names its holder (host, pid, SLURM job) and its holder touches it every
``stale_after / 4`` seconds; a lease not touched for ``stale_after`` seconds, or one whose holder process
on this host is gone, is stale and another worker takes it over: the first to create the takeover
marker of that lease (exclusive again) replaces it, the others move on.  A finished cell is never run
again because its holder checks for the result after taking the lease::

    lease = acquire(folder / "seed-1.lease", stale_after=300)
    if lease is None: ...             # someone else holds the cell
    with lease: run_the_cell()        # heartbeats while it runs; released at the end
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from bench.core.safeyaml import load_json
from bench.core.atomic import write_atomic
from bench.core.errors import warn

STALE_AFTER = 600.0  # seconds without a heartbeat (--lease-timeout)


def this_job() -> Optional[str]:
    """This process's SLURM job (``<array job>_<task>`` for an array task), or None."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task, rank = os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_PROCID")
    name = f"{job}_{task}" if job and task else job
    return f"{name}.{rank}" if name and rank else name


def holder() -> dict:
    """Who takes a lease: this host and process, and the SLURM job when there is one."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "job": this_job(), "token": uuid.uuid4().hex,
            "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def read_lease(path: Path) -> Optional[dict]:
    """The lease's holder, or None for a damaged file (it is then judged by its age alone)."""
    try:
        data = load_json(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("token"), str) else None


def holder_label(current: Optional[dict]) -> str:
    """``node-17 pid 4242, job 991_3``: who holds a lease (for logs and `bench status`)."""
    if current is None:
        return "lease unreadable"
    job = f", job {current['job']}" if current.get("job") else ""
    return f"{current.get('host')} pid {current.get('pid')}{job}"


def age(path: Path) -> Optional[float]:
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


def is_stale(path: Path, current: Optional[dict], stale_after: float) -> bool:
    seconds = age(path)
    if seconds is None:
        return False  # gone: the next exclusive create decides
    here = current is not None and current.get("host") == socket.gethostname()
    if here and not pid_alive(current.get("pid")):
        return True  # its process on this host has died (killed, crashed): no need to wait
    if current is not None and current.get("job") is not None and current.get("job") == this_job() and not here:
        return True  # this SLURM task held it before it was requeued elsewhere: its own cell, resumed now
    return seconds > stale_after


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """A held lease: a context manager that heartbeats until it is released."""

    def __init__(self, path: Path, data: dict, stale_after: float, marker: Optional[Path] = None):
        self.path, self.data, self.stale_after, self.marker = path, data, stale_after, marker
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name=f"lease {path.name}")

    def __enter__(self) -> "Lease":
        self._beat.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def held(self) -> bool:
        current = read_lease(self.path)
        return current is not None and current.get("token") == self.data["token"]

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 4):
            if not self.held():
                warn(f"lease '{self.path}' was taken over by another worker (this one was silent for "
                     f"over {self.stale_after:.0f} s); both write the same result")
                return
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        if self._beat.is_alive():
            self._beat.join()
        if self.held():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if self.marker is not None:
            with contextlib.suppress(FileNotFoundError):
                self.marker.unlink()


def acquire(path: Path, stale_after: float = STALE_AFTER) -> Optional[Lease]:
    """Take the lease at ``path``, or None while someone else holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = holder()
    text = json.dumps(data, sort_keys=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return take_over(path, data, text, stale_after)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Lease(path, data, stale_after)


def take_over(path: Path, data: dict, text: str, stale_after: float) -> Optional[Lease]:
    current = read_lease(path)
    if not is_stale(path, current, stale_after):
        return None
    try:
        generation = current["token"] if current else f"damaged-{int(path.stat().st_mtime)}"
    except FileNotFoundError:
        return None  # released meanwhile: its cell is finished, or the next look takes it
    marker = path.with_name(f"{path.name}.takeover-{generation}")
    try:  # only one worker may take over this generation of the lease
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return None
    if current is None:
        warn(f"lease '{path}' is damaged; taken over as its holder has not touched it for {stale_after:.0f} s")
    elif current.get("job") is not None and current.get("job") == this_job():
        warn(f"lease '{path}' was this SLURM task's ({current.get('job')}) before it was requeued; resuming the cell")
    elif current.get("host") != socket.gethostname():
        warn(f"lease '{path}' of {current.get('host')} (pid {current.get('pid')}, job {current.get('job')}) "
             f"went silent for over {stale_after:.0f} s; taking the cell over")
    write_atomic(path, lambda f: f.write(text))
    return Lease(path, data, stale_after, marker)
