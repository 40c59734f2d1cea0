"""``bilinear``: bilinear target attention with a learned [D, D] matrix.

    score_l = qᵀ W k_l,   weights = normalize(scores) over the real positions

W starts at (I + 0.01·N(0, 1)) / √D, i.e. near the scaled dot product of ``dot``, so training
starts from that pooler and learns which feature interactions matter.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dinbench.poolers import about
from dinbench.poolers.base import Pooler, attend, check_normalization


class BilinearPooler(Pooler, about=about.BILINEAR):
    """q [B, D], keys [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L]. Default normalization 'softmax'."""

    packs = True

    def __init__(self, dim: int, normalization: str = "softmax", noise: float = 0.01) -> None:
        super().__init__()
        self.dim, self.normalization = dim, check_normalization(normalization)
        self.weight = nn.Parameter((torch.eye(dim) + noise * torch.randn(dim, dim)) / math.sqrt(dim))  # [D, D]

    def pool_packed(self, query, packed, age=None):
        qw = query @ self.weight  # [B, D], once per row
        scores = (packed.keys * packed.at_rows(qw)).sum(-1)  # [N]: qᵀ W k at the real positions
        return attend(packed, scores, self.normalization)  # [B, D], [B, L] (0 at padding)
