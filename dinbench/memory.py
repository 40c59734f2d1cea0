"""Peak memory of one run, for its record: the host's resident set and the training device's allocations.

    watch = PeakMemory(device)      # at the start of a run: resets both high-water marks
    ...                             # train, evaluate
    watch.read()                    # {"host_mb": 812.4, "host_scope": "run", "device_mb": None}

Host: Linux keeps a process's peak resident set (``VmHWM`` in /proc/self/status) and lets the process
reset it (writing ``5`` to /proc/self/clear_refs), so a run that shares its process with earlier runs
(``dinbench run --pooler a,b``, a sweep worker) still gets its own peak: ``host_scope`` is ``"run"``.
Where that reset is not allowed (another OS, a locked-down /proc) the figure is the process's peak
since it started (``resource.getrusage``), ``host_scope`` ``"process"``, and may belong to an earlier
run. The figure includes the prepared data the process already holds, the same for every pooler of a
dataset (not the free heap an earlier run in the process kept: dinbench.allocator.release_free_memory at
the start). Device: CUDA's peak of allocated tensor memory since the run started
(``torch.cuda.max_memory_allocated``); None on CPU. Under DDP these are rank 0's.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

from dinbench import allocator

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _vm_hwm_mb() -> float | None:
    """The process's peak resident set in MB from /proc/self/status, or None where there is none."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_host_peak() -> bool:
    """Reset the process's peak resident set to its current one; False where the OS does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _vm_hwm_mb() is not None


def _process_peak_mb() -> float:
    """The process's peak resident set since it started (ru_maxrss: kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


class PeakMemory:
    """High-water marks of one run: created at its start, ``read()`` at its end."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        allocator.release_free_memory()  # free heap an earlier run in this process kept is not this run's
        self.host_scope = "run" if _reset_host_peak() else "process"
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict[str, float | str | None]:
        host = _vm_hwm_mb() if self.host_scope == "run" else None
        device_mb = None
        if self.device.type == "cuda":
            device_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        return {
            "host_mb": round(host if host is not None else _process_peak_mb(), 1),
            "host_scope": self.host_scope,
            "device_mb": None if device_mb is None else round(device_mb, 1),
        }
