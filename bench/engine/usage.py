"""The machine a cell runs on and what the cell used: the device, the CPUs, throughput and memory::

    device = resolve_device("auto")
    reset_peak(device)
    ...                                   # train and evaluate
    peak_memory(device)                   # {"peak_memory_mb": 912.4, "memory_measure": "process max RSS"}
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import re
import resource
import sys
from pathlib import Path
from typing import Optional

import torch

from bench.core.errors import BenchError


def resolve_device(name: str, present: bool = True) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``: what training runs on (others are refused).  With
    ``present=False`` (`bench plan`, `bench status`: keys only) a GPU need not be on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index):
        raise BenchError(f"--device '{name}': expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not present:
        return device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise BenchError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a SLURM allocation counts)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads() -> int:
    """The CPUs this process may use less one, at least one.  Torch's default takes every core;
    when another process holds one, a smoke cell ran 4x slower on 2 cores (6.4 s against 1.6 s
    with one thread)."""
    return max(1, usable_cpus() - 1)


def reset_peak(device: torch.device) -> None:
    """Start a new peak: the GPU allocator's, or (Linux) the process's peak RSS."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory(device: torch.device) -> dict:
    """On a GPU the peak allocated memory since :func:`reset_peak`; on a CPU the process's peak
    resident set (since the reset where Linux allows it, else since the process began)."""
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "memory_measure": "cuda max allocated (this cell)"}
    return {"peak_memory_mb": peak_memory_mb(device), "memory_measure": "process max RSS"}


def peak_memory_mb(device: torch.device) -> Optional[float]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = status_mb("VmHWM")
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KiB on Linux


def release_freed_memory(device: torch.device) -> None:
    """Give memory freed by earlier work back to the system, so that the memory in use and the memory
    available say what the next piece of work can have: the GPU allocator's cache, or (Linux glibc) the
    heap that a process keeps after freeing (its resident set does not shrink without it)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def memory_in_use_mb(device: torch.device) -> Optional[float]:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return status_mb("VmRSS")


def available_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / 2**20
    try:
        return int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1024
    except (OSError, AttributeError):
        return float("inf")


def status_mb(field_name: str) -> Optional[float]:
    """A memory field of this process's /proc status (Linux), in MiB."""
    try:
        return int(re.search(rf"{field_name}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
    except (OSError, AttributeError):
        return None


def per_second(images: int, seconds: float) -> Optional[float]:
    return images / seconds if images and seconds > 0 else None
