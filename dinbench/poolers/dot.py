"""``dot``: scaled dot-product target attention (no parameters).

    score_l = q · k_l / √D,   weights = normalize(scores) over the real positions

The simplest candidate-aware pooler: items close to the candidate in embedding space weigh more.
"""

from __future__ import annotations

import math

from dinbench.poolers.base import Pooler, check_normalization, normalize_scores, weighted_sum


class DotPooler(Pooler):
    """q [B, D], keys [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L]. Default normalization 'softmax'."""

    description = "scaled dot-product target attention q·k/√D (no parameters)"
    uses_candidate = True

    def __init__(self, dim: int, normalization: str = "softmax") -> None:
        super().__init__()
        self.dim, self.normalization = dim, check_normalization(normalization)

    def forward(self, query, keys, mask, age=None):
        scores = (keys @ query.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.dim)  # [B, L]
        weights = normalize_scores(scores, mask, self.normalization)  # [B, L], 0 at padding
        return weighted_sum(weights, keys), weights
