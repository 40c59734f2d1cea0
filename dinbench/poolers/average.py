"""``average``: the masked mean of the history embeddings (candidate-independent)."""

from __future__ import annotations

from dinbench.poolers import about
from dinbench.poolers.base import Pooler


class AveragePooler(Pooler, about=about.AVERAGE):
    packs = True

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def pool_packed(self, query, packed, age=None):
        m = packed.mask.to(packed.keys.dtype)  # [B, L]
        weights = m / m.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, L], rows sum to 1 (0 if empty)
        return packed.weighted_sum(weights), weights
