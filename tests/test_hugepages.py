"""Large tables in transparent huge pages (dinbench.hugepages): where they sit changes, their values do not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dinbench import hugepages
from dinbench.model.embeddings import FeatureEmbeddings

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _thp_setting() -> str | None:
    """The kernel's transparent-huge-page mode ("always", "madvise", "never"), or None off Linux."""
    try:
        text = THP.read_text()
    except OSError:
        return None
    return text[text.index("[") + 1:text.index("]")]


needs_thp = pytest.mark.skipif(not sys.platform.startswith("linux") or _thp_setting() in (None, "never"),
                               reason="needs Linux with transparent huge pages (always or madvise)")


def _huge_kb(t: torch.Tensor) -> int:
    """AnonHugePages (kB) of the mappings that hold ``t``'s memory, from /proc/self/smaps (a tensor's
    memory may span several mappings)."""
    start, end = t.data_ptr(), t.data_ptr() + t.nbytes
    total, overlaps = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            overlaps = lo < end and start < hi
        elif overlaps and head == "AnonHugePages:":
            total += int(line.split()[1])
    return total


@needs_thp
def test_a_large_table_sits_in_huge_pages_and_a_plain_one_does_not_unless_the_kernel_says_always():
    huge = hugepages.zeros((1 << 20, 16))  # 64 MB
    assert huge.shape == (1 << 20, 16) and not huge.any()
    assert _huge_kb(huge) >= 16 * 1024  # most of it: the kernel may leave a few 2 MB pages small
    if _thp_setting() == "madvise":
        plain = torch.zeros(1 << 20, 16)
        assert _huge_kb(plain) == 0


@needs_thp
def test_a_large_catalogue_s_item_table_sits_in_huge_pages():
    """Even where the C allocator holds freed memory of that size for reuse (touched already, in
    small pages), as a long process's does."""
    torch.ones(8_000_000).sum()  # 32 MB allocated, touched and freed
    emb = FeatureEmbeddings(n_items=200_000, n_categories=10, dim=32, init_std=0.1, sparse=True)  # 25.6 MB
    assert _huge_kb(emb.item.weight) >= 8 * 1024


def test_small_tensors_and_other_devices_are_allocated_as_usual():
    small = hugepages.zeros((1000,))
    assert small.shape == (1000,) and not small.any() and _huge_kb(small) == 0
    assert hugepages.empty((1 << 20, 16), device="meta").device.type == "meta"


def test_a_large_tensor_is_zero_writable_and_outlives_nothing_it_needs():
    """The mapping behind a large tensor stays alive with the tensor (and only with it)."""
    t = hugepages.zeros((1 << 18, 16))  # 16 MB
    assert not t.any() and t.is_contiguous()
    t.fill_(2.0)
    view = t[5]
    del t
    assert torch.equal(view, torch.full((16,), 2.0))


@pytest.mark.parametrize("n_items", [1_000, 200_000], ids=["small table", "huge-page table"])
def test_the_tables_are_initialised_as_before(n_items):
    """The same seed gives the same weights as nn.Embedding allocating them itself (the random
    stream is consumed as before, so every later number of a run is unchanged too)."""
    torch.manual_seed(7)
    emb = FeatureEmbeddings(n_items=n_items, n_categories=10, dim=8, init_std=0.1, sparse=True)
    after = torch.randn(3)
    torch.manual_seed(7)
    expected = [nn.Embedding(rows, 8, padding_idx=0) for rows in (n_items + 1, 11)]  # as before huge pages
    for table in expected:
        nn.init.normal_(table.weight, std=0.1)
        with torch.no_grad():
            table.weight[0].zero_()
    expected = [table.weight for table in expected]
    assert torch.equal(emb.item.weight, expected[0]) and torch.equal(emb.category.weight, expected[1])
    assert torch.equal(after, torch.randn(3))
