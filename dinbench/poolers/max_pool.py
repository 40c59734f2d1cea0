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
        keys, real = packed.keys, packed.real  # [N, D], [N] or None
        if real is not None:  # padding listed too (a static batch): it never wins
            keys = keys.masked_fill(~real.unsqueeze(-1), float("-inf"))
        nonempty = packed.mask.any(1, keepdim=True)  # [B, 1]
        if keys.device.type in ("cpu", "cuda"):  # segment_reduce: twice as fast as scatter_reduce on CPU
            # each row's listed positions are contiguous
            pooled = torch.segment_reduce(keys, "max", lengths=packed.lengths(), axis=0, unsafe=True)  # [B, D]
            return torch.where(nonempty, pooled, 0.0), None  # an empty row pools to 0
        index = packed.row.unsqueeze(-1).expand_as(keys)  # [N, D]
        empty = keys.new_zeros(packed.rows, keys.shape[1])  # [B, D]
        return torch.where(nonempty, empty.scatter_reduce(0, index, keys, "amax", include_self=False), 0.0), None
