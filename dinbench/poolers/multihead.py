"""``multihead``: multi-head target attention; the candidate is the query, the history keys and values.

    q_h = (Wq q)_h,  k_lh = (Wk k_l)_h,  v_lh = (Wv k_l)_h          heads h = 1..H, each D/H wide
    weights_hl = normalize_l(q_h · k_lh / √(D/H))                   per head, over the real positions
    pooled = Wo [Σ_l weights_1l v_l1, ..., Σ_l weights_Hl v_lH]      heads concatenated, D -> D

All four projections are D -> D and bias-free (as in FuxiCTR's MultiHeadTargetAttention): a bias
on Wk would add a per-row constant to the scores, which softmax ignores, and a bias on Wo would
duplicate the MLP's own; without them an empty history pools to exactly 0 like every other pooler.
The returned weights are the mean over heads, [B, L] (they still sum to 1 under softmax).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dinbench.poolers.base import Pooler, check_normalization, normalize_scores


class MultiHeadPooler(Pooler):
    """q [B, D], keys [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L] (mean over heads).

    Defaults: heads 4 (must divide D), normalization 'softmax'.
    """

    description = "multi-head target attention (candidate = query, history = keys/values)"
    uses_candidate = True

    def __init__(self, dim: int, heads: int = 4, normalization: str = "softmax") -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"heads ({heads}) must be a positive divisor of the key width {dim}")
        self.dim, self.heads, self.normalization = dim, heads, check_normalization(normalization)
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.w_o = nn.Linear(dim, dim, bias=False)

    def forward(self, query, keys, mask, age=None):
        (B, L, D), H = keys.shape, self.heads
        q = self.w_q(query).view(B, H, D // H)  # [B, H, d]
        k = self.w_k(keys).view(B, L, H, D // H)  # [B, L, H, d]
        v = self.w_v(keys).view(B, L, H, D // H)  # [B, L, H, d]
        scores = torch.einsum("bhd,blhd->bhl", q, k) / math.sqrt(D // H)  # [B, H, L]
        weights = normalize_scores(scores, mask.unsqueeze(1), self.normalization)  # [B, H, L], 0 at padding
        heads = torch.einsum("bhl,blhd->bhd", weights, v)  # [B, H, d]
        pooled = self.w_o(heads.reshape(B, D))  # [B, D]
        return pooled, weights.mean(dim=1)
