"""Retrieve, then attend: the shared stage of the long-sequence poolers ``sim`` and ``eta``.

Histories of hundreds to thousands of behaviours are too long for target attention over every
position. SIM (Pi et al., CIKM 2020) and ETA (Chen et al., 2021) first *retrieve* at most K of them
per row, cheaply and without gradient, then run target attention over those K only:

    query  q   [B, D]                 the candidate
    packed     keys [N, D], mask [B, L] (and, for sim:hard, the ids: categories [N], query_categories [B])
    1. retrieval score s [N] per real position (the subclass: category match, inner product, Hamming)
       -> padded [B, L], -inf at padding and at positions never to retrieve
    2. the K' = min(top_k, L) best positions per row, equal scores going to the most recent (larger
       position; histories are oldest first): a stable sort of the row reversed -> index [B, K'],
       valid [B, K'] (False where the row has fewer than K' retrievable positions)
    3. the retrieved keys [B, K', D] (gathered from the packed keys; 0 where not valid), scored by
       din's activation unit (dinbench.poolers.din.DINPooler.padded_scores: one MLP over
       [q, k, q - k, q ⊙ k], its activations from dinbench.layers), normalised by a softmax over the
       valid retrieved positions (SIM's and ETA's choice: their attention over the retrieved
       behaviours is softmax attention)
    -> pooled [B, D] = Σ_j w_j k_j over the retrieved keys, weights [B, L] (0 outside the retrieval)

Padding never matters: it is never retrieved (score -inf) and never valid. A row that retrieves
nothing (empty history; for sim:hard, no behaviour of the candidate's category) pools to exactly 0,
with finite gradients (the softmax of an all-masked row is zeroed, see base.normalize_scores).

Cost: the retrieval is O(N) scores plus one sort of the [B, L] score matrix; the attention is
O(B K' H), bounded by K whatever the history length. Nothing is [B, L, L] or [B, L, D]: memory is
linear in L. Step 1-2 run without gradient (a top-K is not differentiable); gradients reach the keys
and the unit through step 3 only. The unit's output bias is dropped: the softmax ignores a shift
shared by a row's scores, so it would be a parameter that never gets a gradient.
"""

from __future__ import annotations

import torch

from dinbench.poolers.base import Pooler, normalize_scores, weighted_sum
from dinbench.poolers.din import DINPooler
from dinbench.poolers.packed import Packed


class RetrievalPooler(Pooler):
    """Base of sim and eta: subclasses implement ``retrieval_scores``; see the module docstring."""

    packs = True

    def __init__(self, dim: int, top_k: int, attention_hidden: tuple[int, ...], attention_activation: str) -> None:
        super().__init__()
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1 (got {top_k})")
        self.dim, self.top_k = dim, top_k
        self.attention = DINPooler(dim, attention_hidden, attention_activation, normalization="softmax")
        self.attention.rest[-1].register_parameter("bias", None)  # softmax ignores it: no gradient would reach it

    def retrieval_scores(self, query: torch.Tensor, packed: Packed) -> torch.Tensor:
        """query [B, D], packed -> [N] score per listed position: larger is retrieved first, -inf never."""
        raise NotImplementedError

    def retrieve(self, query: torch.Tensor, packed: Packed) -> tuple[torch.Tensor, torch.Tensor]:
        """-> index [B, K'] (positions in the padded layout, best first) and valid [B, K'] bool."""
        with torch.no_grad():
            mask = packed.mask  # [B, L], False at padding and at a static batch's fillers
            length = mask.shape[1]
            scores = packed.to_padded(self.retrieval_scores(query, packed).float())  # [B, L]
            scores = scores.masked_fill(~mask, -torch.inf)
            # stable sort of each row reversed: equal scores keep the reversed order, most recent first
            best = torch.sort(scores.flip(1), dim=1, descending=True, stable=True)
            k = min(self.top_k, length)
            index = (length - 1) - best.indices[:, :k]  # [B, K']
            valid = best.values[:, :k] > -torch.inf  # [B, K']
        return index, valid

    def pool_packed(self, query, packed, age=None):
        """query [B, D], packed (keys [N, D]) -> pooled [B, D], weights [B, L] (softmax over the retrieved)."""
        index, valid = self.retrieve(query, packed)  # [B, K'], [B, K']
        n = packed.keys.shape[0]
        with torch.no_grad():  # where each padded position's key sits in packed.keys (n = none: a zero row)
            slot = torch.full(packed.mask.shape, n, dtype=torch.long, device=query.device)  # [B, L]
            slot = slot.index_put((packed.row, packed.pos), torch.arange(n, device=query.device))
            at = slot.gather(1, index).masked_fill(~valid, n)  # [B, K']
        table = torch.cat([packed.keys, packed.keys.new_zeros(1, packed.keys.shape[1])])  # [N + 1, D]
        keys = table.index_select(0, at.flatten()).view(*at.shape, -1)  # [B, K', D]; index_add backward
        scores = self.attention.padded_scores(query, keys, valid)  # [B, K']
        w = normalize_scores(scores, valid, "softmax")  # [B, K'], 0 where not valid
        weights = w.new_zeros(packed.mask.shape).scatter(1, index, w)  # [B, L]; index distinct per row
        return weighted_sum(w, keys), weights
