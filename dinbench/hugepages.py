"""Large host tables in transparent huge pages: a catalogue's embedding rows and their optimizer state.

A row-sparse step reads and writes a few thousand rows at random places in the item table and its
moments (512 MB and 1 GB at 4 M items of width 32). With 4 KB pages nearly every such row costs a
TLB miss and a page walk on top of its cache miss; with 2 MB pages the whole table is a few hundred
TLB entries. Measured on the 2-core machine (a micro-benchmark of one batch's 11,000 row reads and
writes at 4 M items, docs/performance.md): about 40 % less time; benchmarks/catalogue.py shows the
whole effect on training.

    table = hugepages.empty((rows, dim))      # like torch.empty, in huge pages where the OS allows
    state = hugepages.zeros((rows, 2, dim))   # like torch.zeros

Linux only, through ``madvise(MADV_HUGEPAGE)`` on the tensor's memory before anything is written
to it (the pages are then faulted in as huge pages; memory already written stays as it is). Where
the call does not exist (another OS) or the kernel declines (transparent huge pages ``never``),
these are plain ``torch.empty``/``torch.zeros``: the values are the same either way, only where
they sit in memory differs. Tensors under ``MIN_BYTES``, and any device other than the CPU, are
allocated as usual.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

import torch

MIN_BYTES = 4 << 20  # smaller tables fit the caches and the TLB anyway
HUGE_PAGE = 2 << 20  # x86-64 and arm64 (4 KB base pages)
MADV_HUGEPAGE = 14  # <sys/mman.h> on Linux


def _madvise() -> Any:
    """libc's madvise, or None where there is none to call (not Linux, no libc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    fn = libc.madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()


def advise(t: torch.Tensor) -> bool:
    """Ask for huge pages under the whole 2 MB-aligned part of ``t``'s memory. Call it before the
    memory is first written. True when the kernel took the advice."""
    if _MADVISE is None or t.device.type != "cpu" or t.nbytes < MIN_BYTES:
        return False
    start = t.data_ptr()
    lo = -(-start // HUGE_PAGE) * HUGE_PAGE  # round up
    hi = (start + t.nbytes) // HUGE_PAGE * HUGE_PAGE  # round down
    return hi > lo and _MADVISE(lo, hi - lo, MADV_HUGEPAGE) == 0


def empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """``torch.empty(shape)``, in huge pages on the CPU where the OS allows (see the module's doc)."""
    t = torch.empty(shape, dtype=dtype, device=device)
    advise(t)
    return t


def zeros(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """``torch.zeros(shape)``, in huge pages on the CPU where the OS allows (see the module's doc)."""
    return empty(shape, dtype, device).zero_()
