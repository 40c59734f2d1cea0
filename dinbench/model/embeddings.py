"""Item and category embeddings, shared by the candidate and the history.

A behaviour or candidate is embedded as item ⊕ category, width 2 * dim. Row 0 is padding and
stays zero. Initialisation: normal with standard deviation ``init_std`` (see docs/defaults.md).
"""

from __future__ import annotations

import torch
from torch import nn

from dinbench import hugepages
from dinbench.optimizers import sparse_gradient


class FeatureEmbeddings(nn.Module):
    def __init__(self, n_items: int, n_categories: int, dim: int, init_std: float, sparse: bool = False) -> None:
        """``sparse``: for a row-sparse optimizer (dinbench.optimizers): a large table's gradient is
        sparse (only the rows a batch touched; a small one's stays dense, which is cheaper to read).
        The numbers are the same either way."""
        super().__init__()
        self.item = _table(n_items + 1, dim, sparse)
        self.category = _table(n_categories + 1, dim, sparse)
        for table in (self.item, self.category):
            nn.init.normal_(table.weight, std=init_std)
            with torch.no_grad():
                table.weight[0].zero_()

    @property
    def out_dim(self) -> int:
        return self.item.embedding_dim + self.category.embedding_dim

    def forward(self, item: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """item, category: [...] long -> [..., 2 * dim]"""
        return torch.cat([self.item(item), self.category(category)], dim=-1)

    def query_and_keys(self, query_item: torch.Tensor, query_category: torch.Tensor, item: torch.Tensor,
                       category: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(self(query_item, query_category) [B, 2 * dim], self(item, category) [N, 2 * dim]) from ids [B]
        and [N]. A table with a sparse gradient is looked up once for both: its gradient then comes as one
        sparse tensor instead of two that autograd adds (3 % faster steps of ``average`` at 4 M items).
        The keys' entries go first, as in that sum, so a row's entries are summed in the same order,
        except that a row that is the candidate of several batch rows now adds those one by one (autograd
        had summed them first): the same numbers up to float rounding, and only for sparse tables (50,000
        rows and more, dinbench.optimizers.SPARSE_MIN_ROWS). Dense tables keep two lookups, bit for bit."""
        query_i, keys_i = _lookup_both(self.item, query_item, item)  # [B, dim], [N, dim]
        query_c, keys_c = _lookup_both(self.category, query_category, category)  # [B, dim], [N, dim]
        return torch.cat([query_i, query_c], dim=-1), torch.cat([keys_i, keys_c], dim=-1)  # [B, 2 dim], [N, 2 dim]


def _lookup_both(table: nn.Embedding, query: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(table(query) [B, dim], table(keys) [N, dim]); one lookup when the table's gradient is sparse."""
    if not table.sparse:
        return table(query), table(keys)
    ids = torch.cat([keys, query])  # [N + B]
    both = _SparseLookup.apply(table.weight, ids) if _no_padding(ids) else table(ids)  # [N + B, dim]
    return both[len(keys):], both[:len(keys)]


class _Table(nn.Embedding):
    """nn.Embedding (padding row 0) whose sparse-gradient lookup off the CPU is ``_SparseLookup`` with the
    padding entries' gradients zeroed in place of torch's backward, which drops them with boolean-mask
    copies: each of those waits for the GPU to learn how many entries remain (a host sync every step).
    The same gradient up to row 0's zero entries, which the row-sparse rules leave without effect
    (``optim._summed_by_row``). On the CPU, and under torch.compile, torch's own lookup."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # ids [...] long -> [..., dim]
        if not self.sparse or ids.device.type == "cpu" or torch.compiler.is_compiling():
            return super().forward(ids)
        return _SparseLookup.apply(self.weight, ids.reshape(-1), True).view(*ids.shape, self.embedding_dim)


def _no_padding(ids: torch.Tensor) -> bool:
    """Whether ``ids`` surely hold no padding id 0: checked in eager mode on the CPU only (a GPU would wait
    for the answer, and under torch.compile the check would split the graph); elsewhere False."""
    if ids.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    return not bool((ids == 0).any())


class _SparseLookup(torch.autograd.Function):
    """``nn.Embedding(..., sparse=True)``'s lookup of ids [M] without padding: weight [rows, dim] -> [M, dim],
    the gradient the same sparse tensor (entries in lookup order). torch's own backward first drops the
    padding id's entries with two boolean-mask copies of the [M, dim] gradient; with no padding id present
    there is nothing to drop. Measured at 4 M rows: one lookup and backward of 8,160 ids 1.37 ms with
    torch's, 0.60-0.94 ms with this; a training step of ``average`` 1.6 % faster (docs/performance.md).

    ``zero_padding``: ids may hold the padding id 0, whose entries get a zero gradient (fixed shapes:
    no host sync on a GPU, ``_Table``)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor, zero_padding: bool = False) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.shape, ctx.zero_padding = weight.shape, zero_padding
        return weight.index_select(0, ids)  # what F.embedding computes for 1-d ids

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (ids,) = ctx.saved_tensors
        if ctx.zero_padding:
            grad = torch.where((ids != 0).unsqueeze(1), grad, 0.0)  # [M, dim]
        return torch.sparse_coo_tensor(ids[None], grad, ctx.shape, check_invariants=False), None, None


def _table(rows: int, dim: int, sparse: bool) -> nn.Embedding:
    """_Table(rows, dim, padding_idx=0), an nn.Embedding whose weight sits in huge pages when it is large
    (dinbench.hugepages: a row-sparse step reads and writes its rows at random places). Initialised
    as nn.Embedding initialises its own weight, so the random stream, and every number after it, is
    the same as without huge pages."""
    table = _Table(rows, dim, padding_idx=0, sparse=sparse and sparse_gradient(rows),
                   _weight=hugepages.empty((rows, dim)))
    table.reset_parameters()  # what nn.Embedding's constructor does when it allocates the weight itself
    return table
