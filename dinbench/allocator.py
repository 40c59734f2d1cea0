"""The C allocator's policy in a training process: memory a step frees is kept for the next step.

A CPU training step allocates and frees the same few dozen tensors every step (``din`` at batch 1,024
on amazon-beauty: activations of [N, 80] floats, 2.7 MB each, N = the batch's real history positions).
glibc's malloc, left alone, serves blocks above a threshold (128 KB at start, raised to the size of
the largest such block freed so far) with fresh ``mmap`` pages, and gives the free memory at the top
of its heap back to the OS whenever that exceeds twice the threshold. Depending on the order in which
a process happened to free its blocks, a step then faults in again the pages its predecessor gave
back: 270-440 page faults and about 1 ms of kernel time a step in most processes measured, 55 in
another. ``keep_freed_memory`` sets both thresholds: blocks of up to 32 MB (glibc's largest mmap
threshold) come from the heap, and the heap is not trimmed below 2 GB of free memory, so every step
reuses the blocks the step before it freed (about 5 page faults a step). Measured in turns against
glibc's own thresholds (``benchmarks/allocator.py``, docs/performance.md): 0-9 % off a step, the
kernel's time for those faults.

    allocator.keep_freed_memory()   # once per process, before training (dinbench.train.Trainer does)
    allocator.release_free_memory() # free heap back to the OS: at a run's start (dinbench.memory.PeakMemory)
                                    # and after each scoring batch (dinbench.runtime.predict)
    allocator.state()               # what the record says: "kept", "user" or "default"

The numbers a run computes are the same either way: torch aligns every CPU tensor to 64 bytes
whoever hands out the memory. What changes is the process's resident memory after a peak, which
stays with the process (a training process reuses it; none of it is lost) until
``release_free_memory``: each run calls it as it starts, so that a run's peak resident memory in its
record is its own and not the free heap an earlier run in the same process left (``dinbench run
--pooler a,b``, a sweep worker), and scoring calls it after every batch: its batches grow (shortest
histories first), and a heap that kept each one's blocks grew with them (``din`` on a 40,000-user
synthetic set: a run's peak 960 MB under glibc's own thresholds, 1,101 MB kept, 913 MB kept and
released after each scoring batch).

Linux with glibc only (``mallopt``); elsewhere, and when the user tunes malloc (``GLIBC_TUNABLES``
with a ``glibc.malloc.`` setting, a ``MALLOC_*_`` variable, or another allocator in ``LD_PRELOAD``),
nothing is set: the user's choice wins.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit): blocks up to it come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int: 2 GB of free heap before any is given back
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_state = "default"


def _libc() -> Any | None:
    """glibc, as loaded into this process, or None (another C library, another OS)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl and the BSDs have no such symbol
        return libc
    except (OSError, AttributeError):
        return None


def user_tuned(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Whether the user chose malloc's settings or the allocator themselves (then dinbench sets nothing)."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    preload = environ.get("LD_PRELOAD", "")
    # "malloc" in a preloaded library's name: jemalloc, tcmalloc, mimalloc
    return "glibc.malloc." in tunables or any(name in environ for name in USER_SETTINGS) or "malloc" in preload


def keep_freed_memory(libc: Any | None = None, environ: dict[str, str] | os._Environ = os.environ) -> str:
    """Keep freed blocks in the process (see the module's doc); returns ``state()``. Idempotent.

    ``libc``: for tests, an object with ``mallopt``; by default glibc as loaded (None where there is none)."""
    global _state
    if _state != "default":
        return _state
    if user_tuned(environ):
        _state = "user"
        return _state
    libc = libc if libc is not None else _libc()
    if libc is None:
        return _state
    # both, in this order: setting either one turns off glibc's own raising of the mmap threshold
    if libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
        _state = "kept"
    return _state


def release_free_memory(libc: Any | None = None) -> bool:
    """Give the heap's free memory back to the OS (glibc's ``malloc_trim(0)``) where dinbench keeps it
    (``state() == "kept"``); True if any was given back. Elsewhere glibc (or the user's settings) trims by itself."""
    if _state != "kept":
        return False
    libc = libc if libc is not None else _libc()
    return libc is not None and libc.malloc_trim(0) == 1


def state() -> str:
    """'kept' (dinbench set the thresholds), 'user' (the user's malloc settings or allocator) or 'default'."""
    return _state
