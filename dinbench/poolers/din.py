"""``din``: the DIN activation unit (Zhou et al., KDD 2018, Fig. 2 / Eq. 3).

A small MLP scores each history item k against the candidate q from [q, k, q - k, q ⊙ k];
the pooled vector is the weighted sum of the history with those scores. The paper abandons the
softmax ("to reserve the intensity of user interests"), so the default normalisation is ``none``.

Hidden sizes (80, 40) and sigmoid activations follow the authors' released code.

The first layer is evaluated in split form, which is the same linear map with less work:
W [q, k, q-k, q⊙k] = (Wq + Wd) q + (Wk - Wd) k + Wp (q ⊙ k), where the q-part is computed once
per row instead of once per history position.
"""

from __future__ import annotations

import torch
from torch import nn

from dinbench.poolers.base import Pooler, normalize_scores, weighted_sum

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "prelu": nn.PReLU, "relu": nn.ReLU}


class DINPooler(Pooler):
    description = "DIN activation unit: MLP over [q, k, q-k, q*k] scores each history item"
    uses_candidate = True

    def __init__(
        self,
        dim: int,
        hidden: tuple[int, ...] = (80, 40),
        activation: str = "sigmoid",
        normalization: str = "none",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.dim, self.normalization = dim, normalization
        sizes = (4 * dim, *hidden)
        self.first = nn.Linear(sizes[0], sizes[1])
        rest: list[nn.Module] = [ACTIVATIONS[activation]()]
        for a, b in zip(sizes[1:-1], sizes[2:]):
            rest += [nn.Linear(a, b), ACTIVATIONS[activation]()]
        rest.append(nn.Linear(sizes[-1], 1))
        self.rest = nn.Sequential(*rest)

    def forward(self, query, keys, mask, age=None):
        d = self.dim
        w_q, w_k, w_d, w_p = self.first.weight.split(d, dim=1)  # each [H, D]
        per_row = query @ (w_q + w_d).T + self.first.bias  # [B, H]
        per_pos = keys @ (w_k - w_d).T + (keys * query.unsqueeze(1)) @ w_p.T  # [B, L, H]
        scores = self.rest(per_pos + per_row.unsqueeze(1)).squeeze(-1)  # [B, L]
        weights = normalize_scores(scores, mask, self.normalization)
        return weighted_sum(weights, keys), weights
