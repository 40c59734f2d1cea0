"""``sum``: the sum of the history embeddings, the DIN paper's BaseModel pooling (candidate-independent).

Unlike ``average``, the pooled vector's scale grows with the history length.
"""

from __future__ import annotations

from dinbench.poolers import about
from dinbench.poolers.base import Pooler


class SumPooler(Pooler, about=about.SUM):
    """keys [B, L, D], mask [B, L] -> pooled [B, D] = sum of the real keys, weights = mask [B, L]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    packs = True

    def pool_packed(self, query, packed, age=None):
        weights = packed.mask.to(packed.keys.dtype)  # [B, L], 1 at real positions
        return packed.segment_sum(packed.real_keys()), weights
