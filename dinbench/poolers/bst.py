"""``bst``: Behavior Sequence Transformer (Chen et al., 2019, "Behavior Sequence Transformer for
E-commerce Recommendation in Alibaba").

The candidate and the history form one sequence of T = 1 + L tokens, each its embedding plus a
position embedding; ``layers`` transformer blocks (post-LayerNorm, as in the paper) encode it and the
candidate token's output is the pooled vector:

    x_0 = q + p_0,   x_l = k_l + p_{age(l)}                           tokens [B, 1 + L, D]
    block(x) = LN(h + FFN(h)),  h = LN(x + MHA(x))                   FFN: D -> 4D -> D, LeakyReLU
    pooled = block_n(... block_1(x))[:, 0]                            the candidate's output [B, D]

position:
    "order" (default)  p indexed by rank from the most recent real position (1 for the most recent,
                       2 for the one before, ... clamped to MAX_POSITIONS; the candidate takes 0).
                       Padding between real positions does not count (as time-decay's ranks).
    "time"             p indexed by the bucketed age, 1 + floor(log2(1 + age)) clamped to
                       TIME_BUCKETS (age in the dataset's time unit; the candidate takes 0).
    "none"             no position embedding: the encoder is order-free.

Padding: padding tokens are zeroed at the input (a static batch's fillers and garbage keys never
reach the arithmetic, nor get a gradient) and masked as keys in every attention (weight exactly 0),
so padding never changes any real token. Every query attends at least to the candidate token, so
no softmax row is empty; a row with an empty history pools to exactly 0, like every other pooler
(the candidate's self-attention alone would say nothing about the history).

Weights: the candidate token's attention over the history positions in the last block, averaged
over heads, [B, L], 0 at padding. They do not sum to 1 (the candidate also attends to itself) and,
with several layers, earlier blocks have already mixed the history tokens, so they show where the
last block looks rather than how much each behaviour contributes.

The q, k and v projections are bias-free (a bias on k shifts every score of a query alike, which
softmax ignores; it would be a parameter without a gradient). ``dropout`` (attention weights and the
residual branches) is 0 by default so training and evaluation stay deterministic.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dinbench.poolers import about
from dinbench.poolers.about import BST_POSITIONS
from dinbench.poolers.base import Pooler
from dinbench.poolers.multihead import heads_mismatch

MAX_POSITIONS = 64  # ranks beyond share the last embedding
TIME_BUCKETS = 48  # log2 buckets: 2^47 time units covers any age


class Block(nn.Module):
    """One post-LN transformer block with masked multi-head self-attention (hand-written)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.w_o = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.LeakyReLU(), nn.Linear(4 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, queries: int | None = None):
        """x [B, T, D], keep [B, T] (True: may be attended) -> out [B, Q, D], attention [B, H, Q, T].

        ``queries``: only the first Q tokens are updated (the last block needs the candidate alone)."""
        B, T, D = x.shape
        H = self.heads
        d = D // H
        xq = x if queries is None else x[:, :queries]
        Q = xq.shape[1]
        q = self.w_q(xq).view(B, Q, H, d).transpose(1, 2)  # [B, H, Q, d]
        k = self.w_k(x).view(B, T, H, d).transpose(1, 2)  # [B, H, T, d]
        v = self.w_v(x).view(B, T, H, d).transpose(1, 2)  # [B, H, T, d]
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # [B, H, Q, T]
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        attention = torch.softmax(scores, dim=-1)  # exactly 0 where masked (the candidate is always kept)
        mixed = (self.drop(attention) @ v).transpose(1, 2).reshape(B, Q, D)  # [B, Q, D]
        h = self.norm1(xq + self.drop(self.w_o(mixed)))
        return self.norm2(h + self.drop(self.ffn(h))), attention


class BSTPooler(Pooler, about=about.BST):
    """q [B, D], keys [B, L, D], mask [B, L], age [B, L] (position 'time') -> pooled [B, D], weights [B, L].

    Options (defaults in ``options``): layers 1, heads 2 (must divide D), position 'order', dropout 0.
    """

    def __init__(self, dim: int, layers: int, heads: int, position: str, dropout: float) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(heads_mismatch(heads, dim))
        if layers < 1:
            raise ValueError(f"layers must be at least 1 (got {layers})")
        if position not in BST_POSITIONS:
            raise ValueError(f"unknown position {position!r}; choose one of {', '.join(BST_POSITIONS)}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1) (got {dropout})")
        self.dim, self.heads, self.position = dim, heads, position
        sizes = {"order": MAX_POSITIONS + 1, "time": TIME_BUCKETS + 1}
        if position in sizes:
            self.position_embedding = nn.Embedding(sizes[position], dim)
            nn.init.normal_(self.position_embedding.weight, std=0.02)  # small beside the item embeddings
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))

    @property
    def uses_age(self) -> bool:  # type: ignore[override]
        return self.position == "time"

    def _position_index(self, mask: torch.Tensor, age: torch.Tensor | None) -> torch.Tensor:
        """[B, L] long: each history position's embedding index (padding: anything, it is zeroed)."""
        if self.position == "order":
            real = mask.long()
            rank = real.flip(1).cumsum(1).flip(1)  # [B, L]: 1 for the most recent real position
            return rank.clamp(1, MAX_POSITIONS)
        if age is None:
            raise ValueError("bst with position='time' needs the age tensor (target time - behaviour time)")
        age = age.float().masked_fill(~mask, 0.0).clamp(min=0.0)  # padding may hold anything
        return (torch.log2(1.0 + age).floor().long() + 1).clamp(1, TIME_BUCKETS)

    def forward(self, query, keys, mask, age=None):
        B, L, D = keys.shape
        tokens = torch.cat([query.unsqueeze(1), keys], dim=1)  # [B, 1 + L, D]
        if self.position != "none":
            index = torch.cat([mask.new_zeros((B, 1), dtype=torch.long), self._position_index(mask, age)], dim=1)
            tokens = tokens + self.position_embedding(index)
        keep = torch.cat([mask.new_ones((B, 1)), mask], dim=1)  # [B, 1 + L]: the candidate is always kept
        x = tokens.masked_fill(~keep.unsqueeze(-1), 0.0)  # padding (fillers, garbage) never enters
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x, attention = block(x, keep, queries=1 if last else None)
        has_history = mask.any(dim=1, keepdim=True).to(x.dtype)  # [B, 1]
        pooled = x[:, 0] * has_history  # [B, D]: exactly 0 for an empty history
        weights = attention[:, :, 0, 1:].mean(dim=1) * mask  # [B, L], 0 at padding
        return pooled, weights
