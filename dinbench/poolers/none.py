"""``none``: no history at all. The pooled vector is zeros, so the model sees the candidate only.

The floor of the benchmark: what a pooler gains over it is what the history is worth.
"""

from __future__ import annotations

from dinbench.poolers import about
from dinbench.poolers.base import Pooler


class NonePooler(Pooler, about=about.NONE):
    """keys [B, L, D] -> pooled zeros [B, D], weights None (no position is used)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    packs = True

    def pool_packed(self, query, packed, age=None):
        return packed.keys.new_zeros(packed.rows, packed.keys.shape[1]), None  # [B, D]
