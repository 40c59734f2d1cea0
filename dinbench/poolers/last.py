"""``last``: the most recent behaviour alone.

Histories are oldest first, so the most recent real behaviour is the real position with the
largest index, wherever the padding sits (left, right or interleaved).
"""

from __future__ import annotations

import torch

from dinbench.poolers import about
from dinbench.poolers.base import Pooler


class LastPooler(Pooler, about=about.LAST):
    """keys [B, L, D], mask [B, L] -> pooled [B, D] = the last real key (0 if empty), weights one-hot [B, L]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    packs = True

    def pool_packed(self, query, packed, age=None):
        mask = packed.mask
        pos = torch.arange(mask.shape[1], device=mask.device)  # [L]
        last = torch.where(mask, pos, -1).max(dim=1, keepdim=True).values  # [B, 1], -1 for an empty row
        weights = ((pos == last) & mask).to(packed.keys.dtype)  # [B, L] one-hot (all 0 if empty)
        return packed.weighted_sum(weights), weights
