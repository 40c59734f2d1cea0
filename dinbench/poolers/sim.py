"""``sim``: Search-based Interest Model (Pi et al., CIKM 2020): retrieve, then attend.

SIM's general search unit retrieves the behaviours relevant to the candidate from a long history;
its exact search unit runs target attention over them. Two retrievals (the variant, ``mode``):

``soft`` (default): the ``top_k`` behaviours with the largest inner product <q, k> between the
candidate's embedding and the behaviour's (the paper's soft-search; here the model's own embeddings,
not a separately pre-trained pair). Order-free up to exactly equal products.

``hard``: the behaviours of the candidate's category (``packed.categories == packed.query_categories``),
the ``top_k`` most recent of them (the paper's hard-search, the one it deployed: an index lookup).
It needs the ids: the ranking model passes them; a padded ``forward`` takes ``categories=`` [B, L] and
``query_categories=`` [B]. A row with no behaviour of that category pools to 0.

Soft is the default: the paper's better variant offline (what this benchmark measures), and it needs
only the embeddings. Attention: din's activation unit over the retrieved keys, softmax-normalised
(dinbench.poolers.retrieval). Age is not used (the paper's time-interval embeddings are not modelled).
"""

from __future__ import annotations

import torch

from dinbench.poolers import about
from dinbench.poolers.retrieval import RetrievalPooler

MODES = ("soft", "hard")


class SIMPooler(RetrievalPooler, about=about.SIM):
    """q [B, D], keys [B, L, D], mask [B, L] (+ categories for 'hard') -> pooled [B, D], weights [B, L]."""

    def __init__(self, dim: int, top_k: int, attention_hidden: tuple[int, ...], attention_activation: str,
                 mode: str = "soft") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown SIM mode {mode!r}; choose one of {', '.join(MODES)}")
        super().__init__(dim, top_k, attention_hidden, attention_activation)
        self.mode = mode

    def retrieval_scores(self, query, packed):
        if self.mode == "soft":
            return (packed.keys * packed.at_rows(query)).sum(-1)  # [N] <q, k>
        if packed.categories is None or packed.query_categories is None:
            raise ValueError("sim:hard needs the categories of the history and of the candidate (the ranking "
                             "model passes them; a padded call gives categories= and query_categories=)")
        same = packed.categories == packed.at_rows(packed.query_categories)  # [N]
        return torch.zeros_like(same, dtype=torch.float).masked_fill(~same, -torch.inf)  # ties: most recent first
