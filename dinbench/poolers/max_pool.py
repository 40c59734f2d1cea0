"""``max``: the element-wise maximum over the real history positions (candidate-independent).

Each output feature may come from a different position, so there are no per-position weights.
"""

from __future__ import annotations

import torch

from dinbench.poolers import about
from dinbench.poolers.base import Pooler


class MaxPooler(Pooler, about=about.MAX):
    """keys [B, L, D], mask [B, L] -> pooled [B, D] (0 for an empty history), weights None."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    packs = True

    def pool_packed(self, query, packed, age=None):
        """Per row, the element-wise max over its real positions (a segment max): rows without any keep 0.

        Where positions tie (a repeated item, or items sharing a category), the gradient is shared
        among them rather than given to one; the tied positions embed the same table row, so the
        embeddings' gradients are the same as with a max over the padded layout.
        """
        keys, lengths = packed.keys, packed.mask.sum(1)  # [N, D], [B]: each row's positions are contiguous
        if keys.device.type in ("cpu", "cuda"):  # segment_reduce: twice as fast as scatter_reduce on CPU
            pooled = torch.segment_reduce(keys, "max", lengths=lengths, axis=0, unsafe=True)  # [B, D]
            return torch.where((lengths > 0).unsqueeze(-1), pooled, 0.0), None  # an empty row pools to 0
        index = packed.row.unsqueeze(-1).expand_as(keys)  # [N, D]
        empty = keys.new_zeros(packed.rows, keys.shape[1])  # [B, D]
        return empty.scatter_reduce(0, index, keys, "amax", include_self=False), None
