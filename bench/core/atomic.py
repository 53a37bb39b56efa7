"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A reader never sees a half-written file, and an interrupted write leaves the
previous version (or nothing) in place.  A file found corrupt is renamed aside
(:func:`set_aside`), never deleted, so nothing is lost.  Files get the mode the
umask gives (a lab group shares a results folder), and the temp files of writers
that died mid-write (SIGKILL) are removed the next time their folder is written::

    write_json(root / "smoke" / "seed-1.json", record)      # -rw-r--r-- under umask 022
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Optional, Set

def writer_space() -> str:
    """This host and process-id namespace (containers on one node share a host name, not their pids)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]}-{namespace}"


HOST = writer_space()
# ".<name>.<host>~<pid>.<random>.tmp": whose temp file it is, so a later writer can tell a dead one's
TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)~(?P<pid>\d+)\.[^.]+\.tmp$")
LEGACY_TEMP = re.compile(r"^\..+\.json\.[A-Za-z0-9_]{8}\.tmp$")  # before the writer was named (code < 0.4.0)
STALE_AFTER = 24 * 3600  # another host's temp file older than this is a dead writer's
_swept: Set[str] = set()  # folders cleaned by this process


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = current_umask()  # read once: setting it to read it is not thread-safe


def write_atomic(path: Path, write: Callable[[IO], Any], binary: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{HOST}~{os.getpid()}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; a result is as readable as any file the user makes
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    sweep(path.parent)


def writer_is_dead(name: str, now: float, mtime: float) -> bool:
    """Whether the temp file ``name`` belongs to a writer that is gone: one of this host and pid namespace
    whose process no longer exists, another's (or an unnamed one) not touched for :data:`STALE_AFTER` seconds."""
    match = TEMP.match(name)
    if match is None:
        return LEGACY_TEMP.match(name) is not None and now - mtime > 3600
    if match["host"] != HOST:
        return now - mtime > STALE_AFTER
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def sweep(folder: Path) -> int:
    """Remove the temp files of dead writers in ``folder`` (once per folder and process); how many."""
    key = str(folder)
    if key in _swept:
        return 0
    _swept.add(key)
    removed, now = 0, time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) and writer_is_dead(entry.name, now, entry.stat().st_mtime):
                os.unlink(entry.path)
                removed += 1
    return removed


def write_json(path: Path, data: Any, compact: bool = False) -> None:
    """Strict JSON: a NaN or infinity raises instead of writing a bare ``NaN`` that parsers reject.
    ``compact``: one line in the order given, for large machine-read files (the C encoder, much faster)."""
    if compact:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    else:
        text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(path, lambda f: f.write(text))


def save_torch(path: Path, obj: Any) -> None:
    import torch

    write_atomic(path, lambda f: torch.save(obj, f), binary=True)


def set_aside(path: Path) -> Optional[Path]:
    """Rename ``path`` to ``<name>.corrupt`` (``.corrupt-2``, ... if taken); returns the new path, or
    None when the folder does not allow it (read-only: the file stays, and is skipped)."""
    path = Path(path)
    aside, n = path.with_name(path.name + ".corrupt"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{n}")
    try:
        os.replace(path, aside)
    except OSError:
        return None
    return aside


def set_aside_note(path: Path) -> str:
    """:func:`set_aside`, said for a warning: "set aside as 'x.corrupt'" or why it stays."""
    aside = set_aside(path)
    return f"set aside as '{aside.name}'" if aside else "left in place (its folder does not allow renaming it)"
