"""``average``: the masked mean of the history embeddings (candidate-independent)."""

from __future__ import annotations

import torch

from dinbench.poolers.base import Pooler, weighted_sum


class AveragePooler(Pooler):
    description = "masked mean of the history (no candidate; fits ranking and two-tower)"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, query, keys, mask, age=None):
        m = mask.to(keys.dtype)  # [B, L]
        weights = m / m.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, L], rows sum to 1 (0 if empty)
        return weighted_sum(weights, keys), weights
