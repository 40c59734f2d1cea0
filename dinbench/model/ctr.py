"""The Embedding&MLP click-through-rate model with a pluggable pooler.

Ranking (early fusion, the DIN paper's setting):

    candidate (item, category)    -> q       [B, D]      D = 2 * embedding_dim
    history   (items, categories) -> keys    [N, D]      the N real positions only (Packed)
    pooler(q, packed, age)        -> pooled  [B, D], weights [B, L]
    MLP([q, pooled])              -> logit   [B]

Two-tower (late fusion, retrieval): the user tower never sees the candidate, so only
candidate-independent poolers fit; score = <user_tower(pooled), item_tower(q)> + bias.

Three-tower (pre-ranking): the two towers of two-tower plus a small cross tower over cheap
user x candidate features counted from the history's ids (no embedding, no attention; see
``cross_features``), fused late by a small MLP over [user, item, user * item, cross]. As in
two-tower, the user tower never sees the candidate, so only candidate-independent poolers fit.

Attention groups: ``joint`` pools the item ⊕ category embeddings with one pooler (as the paper's
code does); ``separate`` pools items against items and categories against categories with two
poolers of width embedding_dim and concatenates (as the paper's Fig. 2 draws it).

The pooler is the only part that changes between runs. Only the real history positions are
embedded (a padded position's embedding is the zero padding row and never influences anything), so
embedding lookups and their gradients cost N = real positions, not B * L; poolers without a packed
implementation get the keys padded back to [B, L, D].
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dinbench.batches import Batch
from dinbench.config import ARCHITECTURES
from dinbench.errors import DinbenchError
from dinbench.model.embeddings import FeatureEmbeddings
from dinbench.layers.mlp import MLP
from dinbench.poolers import Pooler
from dinbench.poolers.packed import Packed


class CTRModel(nn.Module):
    def __init__(
        self,
        n_items: int,
        n_categories: int,
        make_pooler: Callable[[int], Pooler],
        embedding_dim: int = 32,
        mlp_hidden: tuple[int, ...] = (200, 80),
        init_std: float = 0.1,
        architecture: str = "ranking",
        attention_groups: str = "joint",
        mlp_activation: str = "prelu",
        tower_dim: int = 64,
        sparse_embeddings: bool = False,
    ) -> None:
        """``make_pooler(dim)`` builds a pooler over keys of width ``dim``; ``sparse_embeddings``: the
        embedding tables get sparse gradients (for the row-sparse optimizers)."""
        super().__init__()
        if architecture not in ARCHITECTURES or attention_groups not in ("joint", "separate"):
            raise ValueError(f"unknown architecture {architecture!r} or attention groups {attention_groups!r}")
        self.embedding_dim, self.architecture = embedding_dim, architecture
        self.embeddings = FeatureEmbeddings(n_items, n_categories, embedding_dim, init_std, sparse_embeddings)
        d = self.embeddings.out_dim
        widths = [d] if attention_groups == "joint" else [embedding_dim, embedding_dim]
        self.poolers = nn.ModuleList(make_pooler(w) for w in widths)
        if architecture != "ranking" and self.poolers[0].uses_candidate:
            raise DinbenchError(
                f"pooler '{type(self.poolers[0]).__name__}' attends to the candidate, which a {architecture} "
                "user tower never sees; use it with --architecture ranking, or pick a candidate-free pooler"
            )
        if architecture == "ranking":
            self.mlp = MLP(2 * d, mlp_hidden, mlp_activation)
        else:
            self.user_tower = MLP(d, mlp_hidden, mlp_activation, out_dim=tower_dim)
            self.item_tower = MLP(d, mlp_hidden, mlp_activation, out_dim=tower_dim)
        if architecture == "two-tower":
            self.bias = nn.Parameter(torch.zeros(()))
        if architecture == "three-tower":
            self.cross_tower = MLP(CROSS_FEATURES, (CROSS_DIM,), mlp_activation, out_dim=CROSS_DIM)
            self.fusion = MLP(3 * tower_dim + CROSS_DIM, (FUSION_HIDDEN,), mlp_activation)

    @property
    def needs_negatives(self) -> bool:
        """Whether a pooler's auxiliary loss needs sampled negatives in training (batches with packed_neg_*)."""
        return any(p.needs_negatives for p in self.poolers)

    @property
    def needs_padded(self) -> bool:
        """Whether the forward reads the batch's padded [B, L] history (BehaviourStore.batch(padded=...)):
        for a pooler that weighs by age (``uses_age``) and for the three-tower cross features."""
        return self.architecture == "three-tower" or any(p.uses_age for p in self.poolers)

    @property
    def has_auxiliary_loss(self) -> bool:
        return any(p.has_auxiliary_loss for p in self.poolers)

    def auxiliary_loss(self) -> torch.Tensor | None:
        """The poolers' weighted auxiliary terms of the last training forward, summed (a 0-d tensor), or None
        (dinbench.poolers.base: the auxiliary-loss seam). The trainer adds it to the click loss."""
        terms = [t for t in (p.auxiliary_loss() for p in self.poolers) if t is not None]
        return None if not terms else terms[0] if len(terms) == 1 else torch.stack(terms).sum()

    def pool(self, q, packed: Packed, age) -> tuple[torch.Tensor, torch.Tensor | None]:
        if len(self.poolers) == 1:
            return self.poolers[0].pool_packed(q, packed, age)
        e = self.embedding_dim
        parts = [p.pool_packed(q[:, s], packed.narrow(s), age) for p, s in zip(self.poolers, (slice(0, e), slice(e, None)))]
        pooled = torch.cat([parts[0][0], parts[1][0]], dim=-1)  # [B, D]
        w = [part[1] for part in parts]
        weights = None if w[0] is None else (w[0] + w[1]) / 2  # [B, L], mean of the two groups
        return pooled, weights

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        items, categories = batch.packed_item, batch.packed_category  # [N], [N]: the listed positions, row-major
        q, keys = self.embeddings.query_and_keys(batch.item, batch.category, items, categories)  # [B, D], [N, D]
        packed = Packed(keys, batch.row, batch.pos, batch.mask, batch.counts, batch.real, items, categories)
        if self.training and batch.packed_neg_item is not None:  # a pooler's auxiliary loss (Pooler.needs_negatives)
            packed.negatives = self.embeddings(batch.packed_neg_item, batch.packed_neg_category)  # [N, D]
        if self.architecture == "ranking":
            packed.query_items, packed.query_categories = batch.item, batch.category  # [B], [B]
            pooled, weights = self.pool(q, packed, batch.age)  # [B, D], [B, L]
            return self.mlp(torch.cat([q, pooled], dim=-1)), weights
        # two-tower: the user side is computed without the candidate
        pooled, weights = self.pool(torch.zeros_like(q), packed, batch.age)
        user = self.user_tower(pooled)  # [B, T]
        item = self.item_tower(q)  # [B, T]
        if self.architecture == "two-tower":
            return (user * item).sum(-1) + self.bias, weights
        cross = self.cross_tower(cross_features(batch).to(q.dtype))  # [B, C]
        return self.fusion(torch.cat([user, item, user * item, cross], dim=-1)), weights


CROSS_FEATURES = 6
CROSS_DIM = 8  # the cross tower's hidden and output width
FUSION_HIDDEN = 32  # the late-fusion MLP's one hidden layer


def cross_features(batch: Batch) -> torch.Tensor:
    """[B, 6] cheap user x candidate features of the three-tower cross tower, from ids and the mask only:

    log(1 + n same-category behaviours), their share of the history, recency of the latest one
    1 / (1 + rank from the most recent real position) (0 if none), the same two counts' analogue for
    the candidate's own item (log count, recency), and log(1 + history length). Padding (whatever
    ids it holds) never counts.
    """
    mask = batch.mask
    real = mask.float()  # [B, L]
    rank = real.flip(1).cumsum(1).flip(1) - real  # [B, L]: 0 for the most recent real position
    length = real.sum(1)  # [B]
    out = []
    for hist, target in ((batch.hist_category, batch.category), (batch.hist_item, batch.item)):
        same = (hist == target.unsqueeze(1)) & mask  # [B, L]
        count = same.float().sum(1)  # [B]
        latest = rank.masked_fill(~same, float("inf")).min(1).values  # [B], inf when none
        out += [torch.log1p(count), 1.0 / (1.0 + latest)]
        if hist is batch.hist_category:
            out.append(count / length.clamp(min=1.0))
    out.append(torch.log1p(length))
    return torch.stack(out, dim=-1)
