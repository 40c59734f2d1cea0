"""Large host tables in transparent huge pages: a catalogue's embedding rows and their optimizer state.

A row-sparse step reads and writes a few thousand rows at random places in the item table and its
moments (512 MB and 1 GB at 4 M items of width 32). With 4 KB pages nearly every such row costs a
TLB miss and a page walk on top of its cache miss; with 2 MB pages the whole table is a few hundred
TLB entries. Measured on the 2-core machine (a micro-benchmark of one batch's 11,000 row reads and
writes at 4 M items, docs/performance.md): about 40 % less time; benchmarks/catalogue.py shows the
whole effect on training.

    table = hugepages.empty((rows, dim))      # like torch.empty, in huge pages where the OS allows
    state = hugepages.zeros((rows, 2, dim))   # like torch.zeros

Linux only: the memory is a fresh private anonymous mapping (``mmap``), advised with
``MADV_HUGEPAGE`` before anything touches it, so its pages fault in as huge pages. Fresh, because
memory that the C allocator hands out again (it keeps freed blocks of up to 32 MB for reuse) has
been touched already and keeps its small pages. ``zeros`` writes its zeros at once, so that the
pages are made before training rather than during its first steps. Where there is no such call
(another OS) or the kernel declines (transparent huge pages ``never``), these are plain
``torch.empty``/``torch.zeros``: the values are the same either way, only where they sit in memory
differs. Tensors under ``MIN_BYTES``, and any device other than the CPU, are allocated as usual.
"""

from __future__ import annotations

import math
import mmap
import sys

import torch

MIN_BYTES = 4 << 20  # smaller tables fit the caches and the TLB anyway
_MAPPING = sys.platform.startswith("linux") and hasattr(mmap, "MADV_HUGEPAGE")


def _mapped(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor | None:
    """A tensor in a fresh, untouched, huge-page-advised mapping, or None where one is not wanted or not possible."""
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if not _MAPPING or torch.device(device).type != "cpu" or nbytes < MIN_BYTES:
        return None
    try:
        memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE)
        memory.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):
        return None
    return torch.frombuffer(memory, dtype=dtype).view(shape)  # the tensor keeps the mapping alive


def empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """``torch.empty(shape)``, in huge pages on the CPU where the OS allows (see the module's doc)."""
    t = _mapped(shape, dtype, device)
    return torch.empty(shape, dtype=dtype, device=device) if t is None else t


def zeros(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """``torch.zeros(shape)``, in huge pages on the CPU where the OS allows (see the module's doc)."""
    t = _mapped(shape, dtype, device)
    return torch.zeros(shape, dtype=dtype, device=device) if t is None else t.zero_()  # the pages made now
