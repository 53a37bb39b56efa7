"""Local workers: N processes on one machine, one device each, pulling cells through their leases.

Each worker is a fresh process (``spawn``) that loads the same selection and runs it on its own device,
starting at its own place in the plan; a cell held by another worker is tried again until it is done,
so a worker that dies leaves a stale lease that another takes over::

    outcome = run_workers(Selection(...), devices=["cuda:0", "cuda:1"])   # Counter: ran, failed, ...
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Optional

POLL = 5.0  # seconds between looks at cells other workers hold


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
PRECEDENCE = ("ran", "failed", "done before", "failed before", "running elsewhere")


def run_workers(selection: Selection, devices: List[str], log: Callable[[str], None] = print) -> Counter:
    """Run the selection with one process per entry of ``devices``; what happened to each cell."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be shared with forked children
    with concurrent.futures.ProcessPoolExecutor(len(devices), mp_context=context) as pool:
        jobs = [pool.submit(work, selection, device, index, len(devices)) for index, device in enumerate(devices)]
        # a worker's own error (not a cell's, which it records) is raised again here
        outcome = merge(job.result() for job in concurrent.futures.as_completed(jobs))
    log(f"bench: {len(devices)} workers finished")
    return outcome


def merge(reports: Iterable[List[tuple]]) -> Counter:
    """Each cell once, as the worker that did the most with it saw it (:data:`PRECEDENCE`)."""
    final: Dict[tuple, str] = {}
    for report in reports:
        for cell, outcome in report:
            if cell not in final or PRECEDENCE.index(outcome) < PRECEDENCE.index(final[cell]):
                final[cell] = outcome
    return Counter(final.values())


def work(selection: Selection, device: str, index: int, workers: int) -> List[tuple]:
    """One worker: the selection's cells (those of each of its parts) on ``device``, waiting out cells
    other workers hold; what it did with each cell."""
    from bench.engine.resources import share_resources

    runners = [(part, runner) for part in selection.parts or [selection]
               for runner in part_runners(part, device, index, workers)]
    share_resources([runner for _, runner in runners])
    outcome: List[tuple] = []
    for part, runner in runners:
        runner.run(part.methods, part.seeds, skip_unfit=part.skip_unfit)
        outcome += runner.cell_outcomes.items()
    return outcome


def part_runners(part: Selection, device: str, index: int, workers: int) -> list:
    """A Runner per protocol of ``part`` on ``device``, as worker ``index`` of ``workers``."""
    from bench.config.protocol import load_protocol  # plugins come through $BENCH_PLUGINS (bench.plugins.export)
    from bench.engine.runner import Runner
    from bench.engine.usage import default_threads

    threads = part.options.threads or max(1, default_threads() // workers)  # the workers share the CPUs
    options = replace(part.options, device=device, wait=POLL, threads=threads, start=index / workers,
                      cpu_share=workers, keys_only=None)  # a SLURM submitter planned without the device
    return [Runner(load_protocol(name, part.protocol_overrides), options,
                   log=lambda line, i=index: print(f"[w{i}] {line}", flush=True)) for name in part.names]
