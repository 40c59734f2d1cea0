"""Item and category embeddings, shared by the candidate and the history.

A behaviour or candidate is embedded as item ⊕ category, width 2 * dim. Row 0 is padding and
stays zero. Initialisation: normal with standard deviation ``init_std`` (see docs/defaults.md).
"""

from __future__ import annotations

import torch
from torch import nn

from dinbench.optimizers import sparse_gradient


class FeatureEmbeddings(nn.Module):
    def __init__(self, n_items: int, n_categories: int, dim: int, init_std: float, sparse: bool = False) -> None:
        """``sparse``: for a row-sparse optimizer (dinbench.optimizers): a large table's gradient is
        sparse (only the rows a batch touched; a small one's stays dense, which is cheaper to read).
        The numbers are the same either way."""
        super().__init__()
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0, sparse=sparse and sparse_gradient(n_items + 1))
        self.category = nn.Embedding(n_categories + 1, dim, padding_idx=0,
                                     sparse=sparse and sparse_gradient(n_categories + 1))
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
