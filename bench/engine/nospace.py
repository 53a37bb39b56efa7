"""A full disk (or quota) while writing results: one error line naming the file, and the launch stops.

Every later cell writes its checkpoints and result to the same disk, so trying them would only spend
an epoch each before failing the same way; the cell that met the full disk is not recorded as failed
(once there is space it runs again, from its last checkpoint if it trains), and no half-written file
is left::

    with stop_when_full(path):
        write_json(path, record)      # ENOSPC/EDQUOT -> DiskFull("no space left on device writing ...")
"""
from __future__ import annotations

import contextlib
import errno
from pathlib import Path
from types import TracebackType
from typing import Counter, Iterator, Optional

from bench.core.errors import BenchError

NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


class DiskFull(BenchError):
    """No space left (or the quota reached) where bench writes: every later cell would fail too."""


def no_space(err: Optional[BaseException]) -> Optional[OSError]:
    """The out-of-space error behind ``err``, or None: torch.save reports one as a RuntimeError
    ("unexpected pos") raised while the OSError is handled, so the whole chain is looked at."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def written_path(tb: Optional[TracebackType]) -> Optional[str]:
    """The file the innermost atomic write of a traceback was writing (write errors name no file)."""
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "write_atomic" and "path" in frame.f_locals:
            found = str(frame.f_locals["path"])
        tb = tb.tb_next
    return found


def disk_full(err: BaseException, path=None, results: Optional[Path] = None) -> Optional[DiskFull]:
    """``err`` as one error line if it is a full disk (naming the file written, else ``path``), or None;
    ``results``: the results folder, which another --results-dir can replace."""
    full = no_space(err)
    if full is None:
        return None
    where = full.filename or written_path(err.__traceback__) or path
    if where is None:
        return DiskFull(f"{NO_SPACE[full.errno]} while running a cell; free space on the disks it writes to")
    elsewhere = ""
    if results is None or Path(results).resolve() in Path(where).resolve().parents:  # else: a cache's disk
        elsewhere = " or use --results-dir elsewhere"
    return DiskFull(f"{NO_SPACE[full.errno]} writing '{where}'; free space on its disk{elsewhere}")


@contextlib.contextmanager
def stop_when_full(path, results: Optional[Path] = None) -> Iterator[None]:
    """A full disk while writing ``path`` becomes :class:`DiskFull`; other errors pass unchanged."""
    try:
        yield
    except Exception as err:
        stop = disk_full(err, path, results)
        if stop is None:
            raise
        raise stop from None


def stopped_at(err: DiskFull, tag: str, outcome: Counter) -> DiskFull:
    """``err`` with the cell the launch stopped at and what it did before (its summary, in the one line)."""
    done = ", ".join(f"{n} {what}" for what, n in outcome.items())
    return DiskFull(f"{err} (stopped at {tag}{' after ' + done if done else ''}: the same command goes on from "
                    "there, a cell that trains from its last checkpoint)")
