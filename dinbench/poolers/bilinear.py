"""``bilinear``: bilinear target attention with a learned [D, D] matrix.

    score_l = qᵀ W k_l,   weights = normalize(scores) over the real positions

W starts at (I + 0.01·N(0, 1)) / √D, i.e. near the scaled dot product of ``dot``, so training
starts from that pooler and learns which feature interactions matter.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dinbench.poolers.base import Pooler, check_normalization, normalize_scores, weighted_sum


class BilinearPooler(Pooler):
    """q [B, D], keys [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L]. Default normalization 'softmax'."""

    description = "bilinear target attention qᵀWk, W learned (starts near the scaled dot product)"
    uses_candidate = True

    def __init__(self, dim: int, normalization: str = "softmax", noise: float = 0.01) -> None:
        super().__init__()
        self.dim, self.normalization = dim, check_normalization(normalization)
        self.weight = nn.Parameter((torch.eye(dim) + noise * torch.randn(dim, dim)) / math.sqrt(dim))  # [D, D]

    def forward(self, query, keys, mask, age=None):
        qw = query @ self.weight  # [B, D], once per row
        scores = (keys @ qw.unsqueeze(-1)).squeeze(-1)  # [B, L]: qᵀ W k_l
        weights = normalize_scores(scores, mask, self.normalization)  # [B, L], 0 at padding
        return weighted_sum(weights, keys), weights
