"""``max``: the element-wise maximum over the real history positions (candidate-independent).

Each output feature may come from a different position, so there are no per-position weights.
"""

from __future__ import annotations

import torch

from dinbench.poolers.base import Pooler


class MaxPooler(Pooler):
    """keys [B, L, D], mask [B, L] -> pooled [B, D] (0 for an empty history), weights None."""

    description = "element-wise max over the history (no candidate)"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, query, keys, mask, age=None):
        lowest = torch.finfo(keys.dtype).min
        filled = keys.masked_fill(~mask.unsqueeze(-1), lowest)  # [B, L, D], padding can never win
        pooled = filled.max(dim=1).values  # [B, D]
        nonempty = mask.any(dim=1, keepdim=True)  # [B, 1]
        return torch.where(nonempty, pooled, 0.0), None
