"""``multihead``: multi-head target attention; the candidate is the query, the history keys and values.

    q_h = (Wq q)_h,  k_lh = (Wk k_l)_h,  v_lh = (Wv k_l)_h          heads h = 1..H, each D/H wide
    weights_hl = normalize_l(q_h · k_lh / √(D/H))                   per head, over the real positions
    pooled = Wo [Σ_l weights_1l v_l1, ..., Σ_l weights_Hl v_lH]      heads concatenated, D -> D

All four projections are D -> D and bias-free (as in FuxiCTR's MultiHeadTargetAttention): a bias
on Wk would add a per-row constant to the scores, which softmax ignores, and a bias on Wo would
duplicate the MLP's own; without them an empty history pools to exactly 0 like every other pooler.
The returned weights are the mean over heads, [B, L] (they still sum to 1 under softmax).

Computed without projecting any key: Wk is folded into the query (q_h · (Wk k)_h = (Wk_hᵀ q_h) · k)
and Wv is applied after pooling (Σ_l w_hl (Wv k_l)_h = Wv_h Σ_l w_hl k_l), both once per row, so the
per-position work is 2·H·D multiply-adds instead of 2·D² for the key and value projections. Same
parameters, same function (up to float summation order).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dinbench.options import Option, at_least_one, choice
from dinbench.poolers.base import Pooler, check_normalization, normalize_scores


class MultiHeadPooler(Pooler):
    """q [B, D], keys [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L] (mean over heads).

    Defaults: heads 4 (must divide D), normalization 'softmax'.
    """

    description = "multi-head target attention (candidate = query, history = keys/values)"
    uses_candidate = True
    packs = True
    options = (Option("heads", 4, "number of heads (divides 2 x embedding dim).", int, check=at_least_one,
                      search=choice(1, 2, 4, 8)),)

    def __init__(self, dim: int, heads: int, normalization: str = "softmax") -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"heads ({heads}) must be a positive divisor of the key width {dim}: with attention-groups joint the key width is 2 x --embedding-dim, with separate it is --embedding-dim; change --heads or --embedding-dim")
        self.dim, self.heads, self.normalization = dim, heads, check_normalization(normalization)
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.w_o = nn.Linear(dim, dim, bias=False)

    def pool_packed(self, query, packed, age=None):
        (B, D), H = query.shape, self.heads
        d = D // H
        # q_h · (Wk k)_h = (Wk_hᵀ q_h) · k: Wk is folded into the query once per row, so no key is projected
        q = self.w_q(query).view(B, H, d)  # [B, H, d]
        q_k = torch.einsum("bhe,heD->bhD", q, self.w_k.weight.view(H, d, D)) / math.sqrt(d)  # [B, H, D]
        scores = (packed.at_rows(q_k) * packed.keys.unsqueeze(1)).sum(-1)  # [N, H], real positions only
        padded = packed.to_padded(scores).transpose(1, 2)  # [B, H, L]
        weights = normalize_scores(padded, packed.mask.unsqueeze(1), self.normalization)  # [B, H, L], 0 at padding
        # sum_l w_hl (Wv k_l)_h = Wv_h (sum_l w_hl k_l): pool the raw keys per head, then project once per row
        w_n = weights.transpose(1, 2)[packed.row, packed.pos]  # [N, H]
        pooled_keys = packed.segment_sum(w_n.unsqueeze(-1) * packed.keys.unsqueeze(1))  # [B, H, D]
        heads = torch.einsum("bhD,heD->bhe", pooled_keys, self.w_v.weight.view(H, d, D))  # [B, H, d]
        pooled = self.w_o(heads.reshape(B, D))  # [B, D]
        return pooled, weights.mean(dim=1)
