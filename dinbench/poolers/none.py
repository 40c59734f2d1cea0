"""``none``: no history at all. The pooled vector is zeros, so the model sees the candidate only.

The floor of the benchmark: what a pooler gains over it is what the history is worth.
"""

from __future__ import annotations

from dinbench.poolers.base import Pooler


class NonePooler(Pooler):
    """keys [B, L, D] -> pooled zeros [B, D], weights None (no position is used)."""

    description = "no history: zeros (candidate only; the floor showing what history is worth)"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, query, keys, mask, age=None):
        return keys.new_zeros(keys.shape[0], keys.shape[2]), None  # [B, D]
