"""Files a user names (a data roots file, a SLURM profile, a split list in a data root), read with a bound.

A name can point anywhere: ``/dev/zero`` reads forever, a FIFO blocks until something writes to it, a
folder or a 5 GB file is not a configuration.  :func:`read_named_text` opens without blocking, refuses
anything but a regular file, and reads at most ``limit`` bytes; every refusal is one :class:`BenchError`
naming the file, what it is, and ``hint`` (how to fix it)::

    text = read_named_text(path, "data roots file", hint="it must be YAML, e.g. 'places_lt: /data/places'")
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Union

from .errors import BenchError, reason

SMALL_FILE = 1 << 20  # bytes: the configuration files users write are a few KB

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def read_named_bytes(path: Union[str, Path], what: str, limit: int = SMALL_FILE, hint: str = "") -> bytes:
    """The bytes of the regular file ``path`` (``what`` names it in errors), at most ``limit`` of them."""
    tail = f"; {hint}" if hint else ""
    require_regular(path, what, hint)  # before opening: opening a device can have effects of its own
    try:  # O_NONBLOCK: a FIFO put in its place since opens at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise BenchError(f"{what} '{path}' cannot be read ({reason(err)}){tail}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if _kind_of(info.st_mode):
            raise BenchError(f"{what} '{path}' is {_kind_of(info.st_mode)}, not a file{tail}")
        if info.st_size > limit:
            raise BenchError(f"{what} '{path}' has {info.st_size:,} bytes, more than the {limit:,} it may have{tail}")
        try:
            data = f.read(limit + 1)  # a file that grows while it is read (or lies about its size) stops here
        except OSError as err:
            raise BenchError(f"{what} '{path}' cannot be read ({reason(err)}){tail}") from None
    if len(data) > limit:
        raise BenchError(f"{what} '{path}' has more than the {limit:,} bytes it may have{tail}")
    return data


def require_regular(path: Union[str, Path], what: str, hint: str = "") -> None:
    """One error line unless ``path`` is a regular file (or does not exist: opening it says so)."""
    kind = _kind(path)
    if kind:
        raise BenchError(f"{what} '{path}' is {kind}, not a file{'; ' + hint if hint else ''}")


def read_named_text(path: Union[str, Path], what: str, limit: int = SMALL_FILE, hint: str = "") -> str:
    """:func:`read_named_bytes` decoded as UTF-8; other bytes are one error line."""
    data = read_named_bytes(path, what, limit, hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BenchError(f"{what} '{path}' is not UTF-8 text (byte {err.start:,}){'; ' + hint if hint else ''}") from None


def file_kind(path: Union[str, Path]) -> str:
    """What ``path`` is when it is not a regular file, links followed ('' for a regular file or nothing
    there): 'a folder', 'a FIFO (named pipe)', "a dangling symbolic link (to '/x')", 'a symbolic link loop'."""
    try:
        return _kind_of(os.stat(path).st_mode)
    except FileNotFoundError:
        try:
            return f"a dangling symbolic link (to '{os.readlink(path)}')"
        except OSError:
            return ""  # nothing there
    except OSError as err:
        return "a symbolic link loop" if err.errno == errno.ELOOP else ""


def _kind(path: Union[str, Path]) -> str:
    try:
        return _kind_of(os.stat(path).st_mode)
    except OSError:
        return ""


def _kind_of(mode: int) -> str:
    """What a file that is not a regular file is ('' for a regular file)."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "" if stat.S_ISREG(mode) else "not a regular file"
