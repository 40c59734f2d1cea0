"""``dot``: scaled dot-product target attention (no parameters).

    score_l = q · k_l / √D,   weights = normalize(scores) over the real positions

The simplest candidate-aware pooler: items close to the candidate in embedding space weigh more.
"""

from __future__ import annotations

import math

from dinbench.poolers import about
from dinbench.poolers.base import Pooler, attend, check_normalization


class DotPooler(Pooler, about=about.DOT):
    """q [B, D], keys [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L]. Default normalization 'softmax'."""

    packs = True

    def __init__(self, dim: int, normalization: str = "softmax") -> None:
        super().__init__()
        self.dim, self.normalization = dim, check_normalization(normalization)

    def pool_packed(self, query, packed, age=None):
        scores = (packed.keys * packed.at_rows(query)).sum(-1) / math.sqrt(self.dim)  # [N], real positions only
        return attend(packed, scores, self.normalization)  # [B, D], [B, L] (0 at padding)
