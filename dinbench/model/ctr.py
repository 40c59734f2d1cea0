"""The Embedding&MLP click-through-rate model with a pluggable pooler.

    candidate (item, category)  -> q       [B, D]      D = 2 * embedding_dim
    history   (items, categories) -> keys  [B, L, D]
    pooler(q, keys, mask, age)  -> pooled  [B, D], weights [B, L]
    MLP([q, pooled])            -> logit   [B]

The pooler is the only part that changes between runs.
"""

from __future__ import annotations

import torch
from torch import nn

from dinbench.batches import Batch
from dinbench.model.embeddings import FeatureEmbeddings
from dinbench.model.mlp import MLP
from dinbench.poolers import Pooler


class CTRModel(nn.Module):
    def __init__(
        self,
        n_items: int,
        n_categories: int,
        pooler: Pooler,
        embedding_dim: int = 32,
        mlp_hidden: tuple[int, ...] = (200, 80),
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.embeddings = FeatureEmbeddings(n_items, n_categories, embedding_dim, init_std)
        self.pooler = pooler
        self.mlp = MLP(2 * self.embeddings.out_dim, mlp_hidden)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self.embeddings(batch.item, batch.category)  # [B, D]
        keys = self.embeddings(batch.hist_item, batch.hist_category)  # [B, L, D]
        pooled, weights = self.pooler(q, keys, batch.mask, batch.age)  # [B, D], [B, L]
        return self.mlp(torch.cat([q, pooled], dim=-1)), weights
