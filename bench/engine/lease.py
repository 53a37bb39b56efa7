"""Leases: one holder per cell at a time, across processes, machines and launches.

A lease is ``seed-<seed>.lease`` beside the cell's result, made with an atomic exclusive create on the
shared results file system.  It names its holder (host, pid, SLURM job) and its holder touches it every
``stale_after / 4`` seconds; a lease not touched for ``stale_after`` seconds, or one whose holder process
on this host is gone, is stale and another worker takes it over (with a warning naming the old holder):
the first to create the takeover marker of that lease (exclusive again) replaces it, the others move on.
A marker whose worker died before replacing the lease is itself stale, so the next free marker name is
tried: a crash never blocks a cell.  Anything but a lease file where the lease should be (a folder, a
FIFO, a dangling symbolic link) is set aside at once (no worker makes one; a link to a lease file is a
lease file), and a lease is never opened in a way that waits (a FIFO would, for a writer).  A finished cell is never run again because its holder checks for the result after
taking the lease::

    lease = acquire(folder / "seed-1.lease", stale_after=300)
    if lease is None: ...             # someone else holds the cell
    with lease: run_the_cell()        # heartbeats while it runs; released at the end
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import itertools
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from bench.core.safeyaml import load_json
from bench.core.atomic import set_aside, write_atomic
from bench.core.errors import BenchError, warn
from bench.core.namedfiles import file_kind, read_named_text

STALE_AFTER = 600.0  # seconds without a heartbeat (--lease-timeout)
LEASE_BYTES = 1 << 16  # a lease is a line of JSON


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
        data = load_json(read_named_text(path, "lease", limit=LEASE_BYTES))
    except (BenchError, ValueError):  # gone, damaged, or not a file (a FIFO, opened without waiting)
        return None
    return data if isinstance(data, dict) and isinstance(data.get("token"), str) else None


def holder_label(current: Optional[dict]) -> str:
    """``node-17 pid 4242, job 991_3``: who holds a lease (for logs and `bench status`)."""
    if current is None:
        return "lease unreadable"
    job = f", job {current['job']}" if current.get("job") else ""
    return f"{current.get('host')} pid {current.get('pid')}{job}"


def age(path: Path) -> Optional[float]:
    """Seconds since the lease was touched (a link to nowhere: the link's own time), None if it is gone."""
    try:
        return max(0.0, time.time() - os.stat(path).st_mtime)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            return max(0.0, time.time() - os.lstat(path).st_mtime)
    return None


def is_stale(path: Path, current: Optional[dict], stale_after: float) -> bool:
    """Whether the next worker takes this lease over (`bench run` and `bench status` both ask this)."""
    seconds = age(path)
    if seconds is None:
        return False  # gone: the next exclusive create decides
    if file_kind(path):
        return True  # no worker makes a folder, FIFO or dangling link there: nobody holds the cell
    if not holder_gone(current, seconds, stale_after):
        return False
    return live_marker(path, generation(path, current), stale_after) is None  # else: being taken over now


def holder_gone(current: Optional[dict], seconds: float, stale_after: float) -> bool:
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


def generation(path: Path, current: Optional[dict]) -> str:
    """What names this version of the lease in its takeover markers: its holder's token, else its age."""
    if current is not None:
        return current["token"]
    kind = file_kind(path)
    with contextlib.suppress(FileNotFoundError):
        return f"{'folder' if kind == 'a folder' else 'odd' if kind else 'damaged'}-{int(os.lstat(path).st_mtime)}"
    return "gone"


def markers(path: Path, generation_name: str):
    """The takeover marker names of one generation, in the order workers try them."""
    for n in itertools.count(1):
        yield path.with_name(f"{path.name}.takeover-{generation_name}" + (f".{n}" if n > 1 else ""))


def marker_stale(marker: Path, stale_after: float) -> bool:
    """A marker whose worker died (on this host) or that has waited ``stale_after`` seconds for its
    takeover: that worker crashed between the marker and the lease."""
    seconds = age(marker)
    if seconds is None:
        return True
    return holder_gone(read_lease(marker), seconds, stale_after)


def live_marker(path: Path, generation_name: str, stale_after: float) -> Optional[Path]:
    """The marker of a worker taking this generation over now, or None."""
    for marker in markers(path, generation_name):
        if not os.path.lexists(marker):
            return None
        if not marker_stale(marker, stale_after):
            return marker


def claim(path: Path, generation_name: str, stale_after: float, text: str) -> Optional[Path]:
    """Create the first free takeover marker of this generation (skipping those crashed workers left),
    or None while another worker's marker is live."""
    for marker in markers(path, generation_name):
        if create(marker, text):  # its holder: a worker that finds it can tell whether its maker is gone
            return marker
        if not marker_stale(marker, stale_after):
            return None


class Lease:
    """A held lease: a context manager that heartbeats until it is released."""

    def __init__(self, path: Path, data: dict, stale_after: float, taken_over: Optional[str] = None):
        self.path, self.data, self.stale_after = path, data, stale_after
        self.taken_over = taken_over  # the generation this lease replaced: its markers go at release
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
        for marker in markers(self.path, self.taken_over) if self.taken_over else ():
            if not os.path.lexists(marker):
                break
            with contextlib.suppress(OSError):  # with those of crashed workers before it: that generation is over
                marker.unlink()


def make_folder(folder: Path) -> None:
    """The cell's folder; a file (or a FIFO, a dangling link, a link loop) where it or a folder above it
    should be is one error line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if not isinstance(err, (FileExistsError, NotADirectoryError)) and err.errno != errno.ELOOP:
            raise
        blocker = next((p for p in reversed((folder, *folder.parents)) if os.path.lexists(p) and not os.path.isdir(p)),
                       folder)
        raise BenchError(f"cannot take a lease in '{folder}': '{blocker}' is {file_kind(blocker) or 'a file'} where a "
                         "folder of results should be; move it away (or pick another --results-dir)") from None


def acquire(path: Path, stale_after: float = STALE_AFTER) -> Optional[Lease]:
    """Take the lease at ``path``, or None while someone else holds it."""
    path = Path(path)
    make_folder(path.parent)
    data = holder()
    text = json.dumps(data, sort_keys=True)
    if not create(path, text):
        return take_over(path, data, text, stale_after)
    return Lease(path, data, stale_after)


def create(path: Path, text: str) -> bool:
    """Make ``path`` holding ``text`` if no one has (atomic exclusive create); False if it exists.  A
    failed write (a full disk) leaves no empty file, which would block the cell as a damaged lease."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return True


def take_over(path: Path, data: dict, text: str, stale_after: float) -> Optional[Lease]:
    current = read_lease(path)
    if not is_stale(path, current, stale_after):
        return None
    taken = generation(path, current)
    marker = claim(path, taken, stale_after, text)
    if marker is None:  # only one worker may take over this generation of the lease
        return None
    kind = file_kind(path)
    warn(odd_set_aside(path, marker, kind) if kind else takeover_note(path, current, stale_after))
    write_atomic(path, lambda f: f.write(text))
    return Lease(path, data, stale_after, taken)


def odd_set_aside(path: Path, marker: Path, kind: str) -> str:
    """A folder, FIFO or dangling link (``kind``) where the lease should be, renamed aside (nothing is
    deleted); the warning to print."""
    aside = set_aside(path)
    if aside is None:
        marker.unlink()
        raise BenchError(f"lease '{path}' is {kind}, not a lease file, and cannot be renamed aside; "
                         "remove it (no bench worker makes one)")
    return f"lease '{path}' was {kind}, not a lease file (no bench worker makes one); set aside as '{aside.name}'"


def takeover_note(path: Path, current: Optional[dict], stale_after: float) -> str:
    """The warning a takeover prints: whose lease it was and why it is taken."""
    if current is None:
        return f"lease '{path}' is damaged; taken over as its holder has not touched it for {stale_after:.0f} s"
    if current.get("job") is not None and current.get("job") == this_job():
        return f"lease '{path}' was this SLURM task's ({current.get('job')}) before it was requeued; resuming the cell"
    who = f"{current.get('host')} (pid {current.get('pid')}, job {current.get('job')})"
    if current.get("host") == socket.gethostname() and not pid_alive(current.get("pid")):
        return f"lease '{path}' of {who} is stale: that process has ended (killed or crashed); taking the cell over"
    return f"lease '{path}' of {who} went silent for over {stale_after:.0f} s; taking the cell over"
