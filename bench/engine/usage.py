"""How fast a cell ran and how much memory it took, for its record (``usage``) and for estimates::

    reset_peak(device)
    ...                                   # train and evaluate
    peak_memory(device)                   # {"peak_memory_mb": 912.4, "memory_measure": "process max RSS"}
"""
from __future__ import annotations

import os
import resource
import sys
from typing import Optional

import torch


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    """On a GPU the cell's peak allocated memory; on a CPU the process's peak resident set (it only
    grows, so a later cell of the same process reports at least an earlier one's)."""
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "memory_measure": "cuda max allocated (this cell)"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_memory_mb": rss / (2**20 if sys.platform == "darwin" else 2**10),  # bytes on macOS, KiB on Linux
            "memory_measure": "process max RSS"}


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a SLURM allocation counts)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def per_second(images: int, seconds: float) -> Optional[float]:
    return images / seconds if images and seconds > 0 else None
