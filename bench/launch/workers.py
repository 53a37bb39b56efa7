"""Local workers: N processes on one machine, one device each, pulling cells through their leases.

Each worker is a fresh process (``spawn``) that loads the same selection and runs it on its own device,
starting at its own place in the plan; a cell held by another worker is tried again until it is done.
A worker that dies (killed, out of memory) leaves a lease whose process is gone: the others take its
cell over, and a new worker takes its place on its device.  Workers send each cell's outcome as they
have it, so the summary counts what a dead worker did; they stop (releasing their leases) on SIGTERM,
which the launcher sends them when it is itself stopped, and which they get when it dies, and say which
cells they stopped in (``stopped`` in the summary)::

    outcome = run_workers(Selection(...), devices=["cuda:0", "cuda:1"])   # Counter: ran, failed, ...
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Optional

from bench.core.errors import BenchError, message_of
from bench.engine.store import ResultStore

POLL = 5.0  # seconds between looks at cells other workers hold
REPLACEMENTS = 2  # times a device's worker that died is started again (one the OOM killer ends would die again)
GRACE = 30.0  # seconds stopped workers have to release their leases before they are killed


@dataclass
class Selection:
    """What ``bench run`` was asked to run, in plain values a spawned process can take."""

    names: List[str]  # protocols
    methods: List[str]
    seeds: Optional[List[int]]
    options: object  # bench.engine.runner.RunOptions
    skip_unfit: bool = False
    protocol_overrides: Dict[str, object] = field(default_factory=dict)  # --set protocol.PATH=VALUE
    # a report's selections (bench run --report), each with its own protocols, overrides, methods and
    # seeds, launched as one: the workers then share each protocol's backbone and data across them
    parts: List["Selection"] = field(default_factory=list)
    # when it was launched (time.time()): --retry-failed runs again the failures recorded before, once
    launched_at: Optional[float] = None


class Unfinished(Exception):
    """A launch that ended before its plan was done (stopped by a signal, or every worker died): what
    its cells did, and the exit code."""

    def __init__(self, outcome: Counter, code: int):
        super().__init__(f"launch ended with code {code}")
        self.outcome, self.code = outcome, code


class Stop(BaseException):
    """Raised in a worker by SIGTERM or SIGINT: unwinds its cell, releasing its lease (not an Exception,
    so the cell is not recorded as failed)."""


def device_list(devices: str, workers: int) -> List[str]:
    """``--devices 0,1`` -> ``["cuda:0", "cuda:1"]`` for ``workers`` workers (round robin); ``cpu``
    for CPU workers; each checked here, before any worker starts."""
    from bench.core.errors import BenchError
    from bench.engine.usage import resolve_device

    names = [d.strip() for d in devices.split(",")]
    if not all(names):
        raise BenchError(f"--devices '{devices}': expected GPU indices such as 0,1,2 or 'cpu'")
    chosen = ["cpu" if d == "cpu" else d if d.startswith("cuda") else f"cuda:{d}" for d in names]
    for name in dict.fromkeys(chosen):
        resolve_device(name)  # a device this machine lacks is one error line, before anything starts
    return [chosen[i % len(chosen)] for i in range(workers)]


# What happened to a cell, when workers saw it differently: the one that ran it (or failed) says.
PRECEDENCE = ("ran", "failed", "stopped", "done before", "failed before", "running elsewhere")


def run_workers(selection: Selection, devices: List[str], log: Callable[[str], None] = print) -> Counter:
    """Run the selection with one process per entry of ``devices``; what happened to each cell.  Raises
    :class:`Unfinished` (after the workers are stopped) on SIGTERM or SIGINT, or when every worker died."""
    launch = Launch(selection, devices, log)
    with launch.signals_caught():
        try:
            for index in range(len(devices)):
                launch.running.append(launch.start(index))
            launch.watch()
        finally:
            launch.stop(GRACE)  # nothing here is left running, whatever went wrong
    if launch.signalled is not None:
        name = signal.Signals(launch.signalled).name
        log(f"bench: stopped by {name}: the workers were stopped and their leases released; the same command "
            "resumes the cells left")
        raise Unfinished(launch.outcome(), 128 + launch.signalled)
    if launch.errors:
        raise launch.errors[0]  # a worker's own error (not a cell's, which it records)
    if not launch.finished:
        log("bench: no worker is left to finish the plan (each died or was stopped); the same command resumes "
            "the cells left")
        raise Unfinished(launch.outcome(), 1)
    log(f"bench: {len(devices)} workers finished")
    return launch.outcome()


class Worker:
    """One worker process and the pipe it reports on."""

    def __init__(self, launch: "Launch", index: int):
        context = multiprocessing.get_context("spawn")  # CUDA cannot be shared with forked children
        self.index, self.device = index, launch.devices[index]
        self.reader, writer = context.Pipe(duplex=False)
        self.process = context.Process(target=serve, name=f"bench worker {index}", args=(
            launch.selection, self.device, index, len(launch.devices), writer, os.getpid()))
        self.process.start()
        writer.close()  # the worker's end: its pipe then ends with it
        self.said = ""  # how it ended, as it told: done, error or stopped
        self.closed = False  # its pipe has ended: only its process is waited for

    def handles(self) -> list:
        return [self.process.sentinel] + [self.reader] * (not self.closed)

    def receive(self, launch: "Launch") -> None:
        """Every message the worker has sent (cells' outcomes, then how it ended)."""
        try:
            while not self.closed and self.reader.poll():
                kind, *body = self.reader.recv()
                if kind == "cell":
                    launch.reports.append(tuple(body))
                elif kind == "error":
                    launch.errors.append(body[0])
                self.said = kind if kind != "cell" else self.said
        except Exception:  # noqa: BLE001  (ended, or cut off mid-message: its process tells the rest)
            self.closed = True

    def how_it_ended(self) -> str:
        code = self.process.exitcode
        return f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"


class Launch:
    """The workers of one launch: started, watched, started again when one dies, stopped on a signal."""

    def __init__(self, selection: Selection, devices: List[str], log: Callable[[str], None]):
        self.selection, self.devices, self.log = selection, devices, log
        self.reports: List[tuple] = []  # (cell, outcome), as the workers sent them
        self.errors: List[BaseException] = []
        self.finished = 0  # workers that went through the whole plan
        self.started = Counter()  # device slot -> workers started there
        self.signalled: Optional[int] = None
        self.running: List[Worker] = []

    def start(self, index: int) -> Worker:
        self.started[index] += 1
        return Worker(self, index)

    def outcome(self) -> Counter:
        return merge([self.reports])

    def watch(self) -> None:
        """Until every worker has ended: their messages read, a dead one started again, all stopped
        when this process gets SIGTERM or SIGINT."""
        while self.running and self.signalled is None:
            for worker in self.ready(1.0):  # a second at most: a signal is looked at
                self.running.remove(worker)
                self.ended(worker)

    def ready(self, timeout: float) -> List[Worker]:
        """The workers that ended (reaped: a dead one's lease is then seen as stale) within ``timeout``
        seconds; every message of each worker read."""
        handles = [handle for worker in self.running for handle in worker.handles()]
        ready = multiprocessing.connection.wait(handles, timeout=timeout)
        ended = []
        for worker in [w for w in self.running if set(w.handles()) & set(ready)]:
            worker.receive(self)
            if worker.process.exitcode is not None:
                worker.receive(self)  # what it sent just before it ended
                ended.append(worker)
        return ended

    def ended(self, worker: Worker) -> None:
        if worker.said == "done":
            self.finished += 1
            return
        if worker.said == "error" or self.signalled is not None:
            return
        name = f"worker w{worker.index} ({worker.device})"
        if worker.said == "stopped":
            self.log(f"bench: {name} was stopped by a signal; the other workers take its cells over")
        elif self.started[worker.index] <= REPLACEMENTS:
            self.log(f"bench: {name} died ({worker.how_it_ended()}); a new w{worker.index} takes its place, "
                     "and its cell is taken over")
            self.running.append(self.start(worker.index))
        else:
            self.log(f"bench: {name} died ({worker.how_it_ended()}), {self.started[worker.index]} times: not "
                     "started again; the other workers take its cells over")

    def stop(self, grace: float) -> None:
        """SIGTERM to every worker still running (each releases its lease), SIGKILL after ``grace`` seconds."""
        for worker in self.running:
            worker.process.terminate()
        deadline = time.monotonic() + grace
        while self.running and time.monotonic() < deadline:
            for worker in self.ready(min(1.0, max(0.0, deadline - time.monotonic()))):
                self.running.remove(worker)
        for worker in self.running:
            worker.process.kill()
            worker.process.join()
        self.running = []

    @contextlib.contextmanager
    def signals_caught(self):
        """SIGTERM (``timeout``, a scheduler) and SIGINT stop the launch, in :meth:`watch`, not anywhere."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        caught = (signal.SIGTERM, signal.SIGINT)
        before = {number: signal.getsignal(number) for number in caught}

        def note(number, frame):
            self.signalled = number

        for number in caught:
            signal.signal(number, note)
        try:
            yield
        finally:
            for number, handler in before.items():
                signal.signal(number, handler)


def merge(reports: Iterable[List[tuple]]) -> Counter:
    """Each cell once, as the worker that did the most with it saw it (:data:`PRECEDENCE`)."""
    final: Dict[tuple, str] = {}
    for report in reports:
        for cell, outcome in report:
            if cell not in final or PRECEDENCE.index(outcome) < PRECEDENCE.index(final[cell]):
                final[cell] = outcome
    return Counter(final.values())


def serve(selection: Selection, device: str, index: int, workers: int, pipe, parent: int) -> None:
    """A worker process: :func:`work`, each cell's outcome sent as it has it, then how it ended (done,
    error or stopped)."""
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, stopped)
    die_with(parent)

    def send(*message) -> None:
        try:
            pipe.send(message)
        except OSError:  # the launcher is gone
            raise Stop() from None

    quiet_progress_lock()
    running: List[tuple] = []  # the cells this worker is in (a stage's cell within its dependent's)
    try:
        work(selection, device, index, workers, report=lambda cell, outcome: send("cell", cell, outcome),
             running=running)
        send("done")
    except Stop:
        with contextlib.suppress(Stop):
            for cell in running:  # unfinished: the summary counts them as stopped
                send("cell", cell, "stopped")
            send("stopped")
    except BaseException as err:  # noqa: BLE001  (the launcher says it, as the pool did)
        if not isinstance(err, BenchError):
            traceback.print_exc()
        with contextlib.suppress(Stop):
            send("error", sendable(err))
    finally:
        pipe.close()


def quiet_progress_lock() -> None:
    """tqdm's bars in this worker share a thread lock, not the cross-process semaphore tqdm makes by
    default: no other process draws them, and a worker killed (SIGKILL) would leave that semaphore to the
    launcher's resource tracker, which then warns of a leaked semaphore at exit."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def stopped(number, frame) -> None:
    for each in (signal.SIGTERM, signal.SIGINT):  # once: a second signal must not cut the lease's release short
        signal.signal(each, signal.SIG_IGN)
    raise Stop()


def die_with(parent: int) -> None:
    """SIGTERM to this worker when the launcher (``parent``) is gone, so that it stops and releases its
    lease rather than finishing its cells for no one and idling for good: at once on Linux
    (PR_SET_PDEATHSIG), within a second elsewhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == parent:  # also when it died before prctl above
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="launcher watch").start()


def sendable(err: BaseException) -> BaseException:
    """``err`` as the launcher can rebuild it: a BenchError by its message (a subclass's own arguments
    need not rebuild), another error as itself when it pickles, else by its type and message."""
    if isinstance(err, BenchError):
        return BenchError(message_of(err))
    try:
        return pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001  (any error of unpickling a foreign exception)
        return RuntimeError(f"{type(err).__name__}: {err}")


def work(selection: Selection, device: str, index: int, workers: int,
         report: Optional[Callable[[tuple, str], None]] = None, running: Optional[List[tuple]] = None) -> List[tuple]:
    """One worker: the selection's cells (those of each of its parts) on ``device``, waiting out cells
    other workers hold; what it did with each cell (also given to ``report`` as it happens).  ``running``
    holds the cells under way: those a stop (:class:`Stop`) interrupts are left in it."""
    from bench.engine.resources import share_resources

    runners = [(part, runner) for part in selection.parts or [selection]
               for runner in part_runners(part, device, index, workers, selection.launched_at)]
    share_resources([runner for _, runner in runners])
    outcome: List[tuple] = []
    for part, runner in runners:
        runner.cell_outcomes = Reported(report) if report else runner.cell_outcomes
        if running is not None:
            runner.run_leased = tracked(runner, running)
        runner.run(part.methods, part.seeds, skip_unfit=part.skip_unfit)
        outcome += runner.cell_outcomes.items()
    return outcome


def part_runners(part: Selection, device: str, index: int, workers: int, launched_at: Optional[float] = None) -> list:
    """A Runner per protocol of ``part`` on ``device``, as worker ``index`` of ``workers``; with
    ``--retry-failed``, each runs again only the failures recorded before ``launched_at``."""
    from bench.config.protocol import load_protocol  # plugins come through $BENCH_PLUGINS (bench.plugins.export)
    from bench.engine.runner import Runner
    from bench.engine.usage import default_threads

    threads = part.options.threads or max(1, default_threads() // workers)  # the workers share the CPUs
    once = part.options.retry_failed and launched_at is not None
    options = replace(part.options, device=device, wait=POLL, threads=threads, start=index / workers,
                      cpu_share=workers, keys_only=None,  # a SLURM submitter planned without the device
                      retry_failed=part.options.retry_failed and not once)
    runners = [Runner(load_protocol(name, part.protocol_overrides), options,
                      log=lambda line, i=index: print(f"[w{i}] {line}", flush=True)) for name in part.names]
    for runner in runners if once else []:
        runner.store = FailedBefore(options.results_dir, launched_at)
    return runners


def tracked(runner, running: List[tuple]) -> Callable:
    """``runner.run_leased`` that keeps the cell in ``running`` while it is under way (and there when an
    exception, such as a stop, ends it)."""
    run_leased = runner.run_leased

    def run(cell, tag: str, quiet: bool = False):
        running.append((runner.protocol.name, cell.method, cell.key, cell.seed))
        done = run_leased(cell, tag, quiet)
        running.pop()
        return done

    return run


class Reported(dict):
    """A runner's cell outcomes, each also given to ``report`` as it is set: the launcher counts what a
    worker did even when it dies."""

    def __init__(self, report: Callable[[tuple, str], None]):
        super().__init__()
        self.report = report

    def __setitem__(self, cell: tuple, outcome: str) -> None:
        super().__setitem__(cell, outcome)
        self.report(cell, outcome)

    def setdefault(self, cell: tuple, outcome: str) -> str:
        if cell not in self:
            self[cell] = outcome
        return self[cell]


class FailedBefore(ResultStore):
    """A results store that shows only the failures recorded since ``since`` (``time.time()``): with
    ``--retry-failed`` a worker runs again a cell that failed before the launch, and skips one another
    worker of the same launch has just run again and seen fail (each runs again once per launch)."""

    failed_skip_note = "it failed again in this launch, which runs each failed cell once"

    def __init__(self, root, since: float):
        super().__init__(root)
        self.since = since

    def failure(self, protocol: str, method: str, key: str, seed: int) -> Optional[dict]:
        try:
            recorded = self.failure_path(protocol, method, key, seed).stat().st_mtime
        except OSError:
            return None
        return super().failure(protocol, method, key, seed) if recorded >= self.since else None
