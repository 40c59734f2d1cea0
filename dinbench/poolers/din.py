"""``din``: the DIN activation unit (Zhou et al., KDD 2018, Fig. 2 / Eq. 3).

A small MLP scores each history item k against the candidate q from [q, k, q - k, q ⊙ k];
the pooled vector is the weighted sum of the history with those scores. The paper abandons the
softmax ("to reserve the intensity of user interests"), so the default normalisation is ``none``.

Hidden sizes (80, 40) and sigmoid activations follow the authors' released code. Other
activations: ``prelu`` (one slope per unit), ``relu`` and ``dice`` (the paper's data-adaptive
PReLU, dinbench.layers.activations.Dice; its batch statistics come from real positions only).

The unit itself (its layers and the split-form scoring) lives in dinbench.layers.activation_unit,
shared with ``dien``. The first layer is evaluated in split form, which is the same linear map with
less work: W [q, k, q-k, q⊙k] = (Wq + Wd) q + (Wk - Wd) k + Wp (q ⊙ k), where the q-part is computed
once per row instead of once per history position. The per-position part and the rest of the unit
run on the real positions only, packed into [N, H] (N = number of real positions in the batch).

``outer_product=True`` adds the paper's outer-product features vec(q kᵀ) (D*D per position) to the
first layer's input. Their part of the first layer, Wo vec(q kᵀ) with Wo [H, D*D], is the bilinear
form qᵀ Wo[h] k per hidden unit h (Wo viewed as [H, D, D]), so it is computed as
(q Wo) [B, D, H] once per row and then keys @ (q Wo) [B, L, H]: O(B H D² + B L H D) work and no
[B, L, D*D] tensor. It is initialised as that one wider first layer would be (uniform ±1/√fan_in,
fan_in = 4D + D²).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dinbench.layers import activation_unit
from dinbench.layers.activations import Dice
from dinbench.poolers import about
from dinbench.poolers.base import Pooler, attend, check_normalization, normalize_scores


class DINPooler(Pooler, about=about.DIN):
    """q [B, D], keys [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L] (raw scores for 'none').

    Options (defaults in ``options``): attention_hidden (80, 40), attention_activation 'sigmoid',
    outer_product False; normalization 'none' (the variant).
    """

    packs = True

    def __init__(
        self,
        dim: int,
        attention_hidden: tuple[int, ...],
        attention_activation: str,
        normalization: str = "none",
        outer_product: bool = False,
    ) -> None:
        super().__init__()
        hidden, activation, outer = attention_hidden, attention_activation, outer_product
        self.dim, self.activation, self.normalization = dim, activation, check_normalization(normalization)
        self.first, self.rest = activation_unit.unit_layers(dim, hidden, activation)
        self.outer = None
        if outer:
            bound = 1.0 / math.sqrt(4 * dim + dim * dim)  # as one Linear over [q, k, q-k, q*k, vec(q kᵀ)]
            nn.init.uniform_(self.first.weight, -bound, bound)
            nn.init.uniform_(self.first.bias, -bound, bound)
            self.outer = nn.Parameter(torch.empty(hidden[0], dim, dim).uniform_(-bound, bound))  # [H, D, D]

    def pool_packed(self, query, packed, age=None):
        if self.outer is not None:
            w_query, w_key, w_prod = activation_unit.split_weights(self.first, self.dim)
            per_row = torch.addmm(self.first.bias, query, w_query.T)  # [B, H], once per row
            scores = self._padded_scores(query, packed.padded_keys(), packed.mask, per_row, w_key, w_prod)
            weights = normalize_scores(scores, packed.mask, self.normalization)  # [B, L], 0 at padding
            return packed.weighted_sum(weights), weights
        # only the real positions are scored: [N] scores from N rows instead of B * L (histories are mostly
        # shorter than the batch's longest, so this skips the padded positions' share of the unit's MLP)
        scores = activation_unit.scores(self.first, self.rest, query, packed.keys, packed.row)  # [N]
        return attend(packed, scores, self.normalization)  # [B, D], [B, L] (0 at padding)

    def padded_scores(self, query, keys, mask):
        """The unit's raw scores of every position of padded keys: query [B, D], keys [B, L, D], mask [B, L]
        -> [B, L] (whatever values at padding; Dice takes its statistics from the mask's positions only).

        The retrieval poolers (dinbench.poolers.retrieval) score their K retrieved keys per row with it.
        """
        w_query, w_key, w_prod = activation_unit.split_weights(self.first, self.dim)
        per_row = torch.addmm(self.first.bias, query, w_query.T)  # [B, H], once per row
        return self._padded_scores(query, keys, mask, per_row, w_key, w_prod)

    def _padded_scores(self, query, keys, mask, per_row, w_key, w_prod):
        """Score every position of [B, L] (with the outer product, whose per-row factor is [B, D, H]; and ``padded_scores``)."""
        per_pos = keys @ w_key.T + (keys * query.unsqueeze(1)) @ w_prod.T  # [B, L, H]
        if self.outer is not None:
            q_outer = torch.einsum("bi,hij->bjh", query, self.outer)  # [B, D, H]: q Wo, once per row
            per_pos = per_pos + keys @ q_outer  # + sum_ij q_i Wo[h,i,j] k_j
        h = per_pos + per_row.unsqueeze(1)  # [B, L, H]
        for layer in self.rest:
            h = layer(h, mask) if isinstance(layer, Dice) else layer(h)  # Dice: statistics from real positions
        return h.squeeze(-1)  # [B, L]
