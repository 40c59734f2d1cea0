"""The pooler interface: the one slot that changes between runs.

A pooler turns a user's behaviour history into one vector, optionally given the candidate:

    query  q     [B, D]     the candidate's embedding (item ⊕ category)
    keys   k     [B, L, D]  the history's embeddings, oldest first
    mask         [B, L]     True at real positions; padding may sit anywhere
    age          [B, L]     target time minus behaviour time (None unless the pooler sets ``uses_age``)
    ->  pooled   [B, D]
        weights  [B, L] or None  (per-position weights, 0 at padding; read by analysis and plots)

Every pooler must give padded positions no influence on the output and stay finite for an empty
history (all-False mask). A packing pooler's padded ``forward`` also takes the ids behind the keys
by keyword (``categories=`` [B, L], ``query_categories=`` [B], ...), for poolers that select by id.

The model calls ``pool_packed(query, packed, age)`` with the history packed to its real positions
(dinbench.poolers.packed.Packed: keys [N, D]). Poolers that set ``packs = True`` implement that
natively, so their per-position work scales with N rather than B * L, and their padded ``forward``
packs and calls it (one implementation for both). Any other pooler only implements ``forward``; the
default ``pool_packed`` pads the keys back to [B, L, D] for it.

Auxiliary losses (the seam dien's next-behaviour loss uses; any pooler may): a pooler whose
``has_auxiliary_loss`` is True computes, in each forward in training mode, its own term of the
training objective (already multiplied by its own weight, a 0-d tensor) and hands it back from
``auxiliary_loss()`` until its next forward. The trainer (dinbench.train.Trainer.update) adds the
model's terms (CTRModel.auxiliary_loss: the sum over its poolers) to the click loss before backward,
and records each epoch's mean term as ``train_aux_loss`` in the epoch's history entry (records of
models without one have no such key). Evaluation never asks for it: in eval mode a pooler computes
none. A pooler whose auxiliary loss needs sampled negatives sets ``needs_negatives``: the trainer then
has the store draw one negative item per behaviour (seeded by the run's seed) and, in training, the
model embeds the negative of every listed history position into ``packed.negatives`` [N, D].
"""

from __future__ import annotations

import torch
from torch import nn

from dinbench.poolers.about import NORMALIZATIONS, About
from dinbench.poolers.packed import Packed


class Pooler(nn.Module):
    """Base class. Subclasses give their declaration (``class X(Pooler, about=about.X)``, see
    dinbench.poolers.about) or set ``description`` and ``options`` themselves, and implement ``forward``."""

    description: str = ""
    uses_candidate: bool = False  # attention-style poolers need the candidate (ranking only)
    uses_order: bool = False  # True when the output depends on the order of the history positions
    packs: bool = False  # True when pool_packed is the native implementation (then forward packs and calls it)
    cuda_graphs: bool = True  # False: --compile cuda-graphs refuses it (dinbench.graph_step.check)
    # the auxiliary-loss seam (module docstring); instance properties may override these
    has_auxiliary_loss: bool = False  # True: training forwards compute a term for ``auxiliary_loss()``
    needs_negatives: bool = False  # True: training forwards get ``packed.negatives`` [N, D]
    # True: the pooler reads the ``age`` tensor (then batches gather it; else the model passes None)
    uses_age: bool = False
    # The pooler's own options (dinbench.options.Option), passed to __init__ by name; the one place each
    # is declared: the command line, experiment files, records and --help derive from it.
    options: tuple = ()

    def __init_subclass__(cls, about: About | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if about is not None:
            cls.description, cls.options = about.description, about.options
            cls.uses_candidate, cls.uses_order = about.uses_candidate, about.uses_order
            cls.cuda_graphs = about.cuda_graphs

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor,
        age: torch.Tensor | None = None,
        **ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``ids`` (packing poolers only): the ids behind the keys, for poolers that select by id (sim:hard):
        items / categories [B, L], query_items / query_categories [B] (see Packed.from_padded)."""
        if self.packs:
            return self.pool_packed(query, Packed.from_padded(keys, mask, **ids), age)
        raise NotImplementedError

    def pool_packed(
        self, query: torch.Tensor, packed: Packed, age: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query [B, D], packed (keys [N, D]), age [B, L] -> pooled [B, D], weights [B, L] or None.

        Default, for poolers written against the padded interface: pad the keys and call ``forward``.
        """
        return self.forward(query, packed.padded_keys(), packed.mask, age)


    def auxiliary_loss(self) -> torch.Tensor | None:
        """The pooler's weighted auxiliary term from its last forward in training mode (a 0-d tensor), or
        None (no auxiliary loss, or the last forward was in eval mode or had no negatives)."""
        return None


def check_normalization(normalization: str) -> str:
    """Validate a normalisation name at construction time (rather than at the first forward)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
    return normalization


def normalize_scores(scores: torch.Tensor, mask: torch.Tensor, normalization: str) -> torch.Tensor:
    """Attention scores [B, L] -> weights [B, L], exactly 0 at padding (also [B, H, L] with mask [B, 1, L]).

    ``softmax``: weights sum to 1 over the real positions (an empty history gets all zeros, not NaN).
    ``none``: the raw scores at real positions (the DIN paper's choice, which keeps the intensity of
    interest in the pooled vector's scale).
    """
    if normalization == "softmax":
        filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return torch.softmax(filled, dim=-1) * mask
    if normalization == "none":
        return scores * mask
    raise ValueError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")


def attend(packed: Packed, scores: torch.Tensor, normalization: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of the real positions [N] -> (pooled [B, D], weights [B, L]), normalised per row over its positions.

    ``none`` weighs each listed position by its own score (0 for a static batch's fillers), so the pooled
    sum needs no [B, L] round trip, and the [B, L] weights are a copy for callers that read them (training
    discards them, so no gradient passes through it). The numbers are those of the padded route."""
    if normalization == "none":
        w = scores if packed.real is None else scores * packed.real  # [N]
        return packed.weighted_sum(w), packed.to_padded(w)  # [B, D], [B, L] (0 at padding)
    weights = normalize_scores(packed.to_padded(scores), packed.mask, normalization)  # [B, L], 0 at padding
    return packed.weighted_sum(weights), weights


def weighted_sum(weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """sum_l weights[b, l] * keys[b, l, :]  ->  [B, D]"""
    return torch.bmm(weights.unsqueeze(1), keys).squeeze(1)
