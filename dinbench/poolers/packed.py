"""A batch of histories packed to its real positions: the work of pooling scales with what exists.

A batch pads every history to its longest, but on real data most positions are padding (amazon-beauty,
max length 50: about 8 real positions per training row while the batch's longest is usually 50).
``Packed`` holds only the real positions, row-major (row ascending, then position ascending):

    keys  [N, D]   embeddings of the real positions (N = mask.sum())
    row   [N]      the batch row b of each real position
    pos   [N]      its position l in the padded layout
    mask  [B, L]   True at real positions (the padded layout, for [B, L]-sized weights)

Per-position work (scores, weighted sums) then costs N instead of B * L. The sums are segment sums
(``index_add``), the same additions as over the padded layout minus the zero terms, so results equal
the padded computation up to float summation order. Weights handed back to callers stay [B, L].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class Packed:
    keys: torch.Tensor  # [N, D]
    row: torch.Tensor  # [N] long
    pos: torch.Tensor  # [N] long
    mask: torch.Tensor  # [B, L] bool
    # a static batch (CUDA graphs) lists padding positions too, to a fixed N (BehaviourStore.batch_static)
    counts: torch.Tensor | None = None  # [B] positions listed per row, contiguous (None: mask.sum(1))
    real: torch.Tensor | None = None  # [N] bool, True where a listed position is real (None: all are)
    # the ids behind the embeddings, for poolers that select or sample by id (long-sequence retrieval by
    # category, DIEN's negatives); None where a caller only has embeddings (a padded ``forward``)
    items: torch.Tensor | None = None  # [N] long: item id of each listed position
    categories: torch.Tensor | None = None  # [N] long: its category id
    query_items: torch.Tensor | None = None  # [B] long: the candidate's item id
    query_categories: torch.Tensor | None = None  # [B] long: the candidate's category id
    # for poolers that set ``needs_negatives`` (dien's auxiliary loss), in training only: the embedding of
    # one sampled negative per listed position (an item the user never touched, with its category,
    # embedded by the model's own tables; BehaviourStore.draw_negatives); None otherwise
    negatives: torch.Tensor | None = None  # [N, D]

    @classmethod
    def from_padded(cls, keys: torch.Tensor, mask: torch.Tensor, items: torch.Tensor | None = None,
                    categories: torch.Tensor | None = None, query_items: torch.Tensor | None = None,
                    query_categories: torch.Tensor | None = None) -> "Packed":
        """keys [B, L, D], mask [B, L] -> the real positions of ``keys`` (what poolers' padded ``forward`` uses).

        Optional ids: items / categories [B, L] (taken at the real positions, like the keys), query_items /
        query_categories [B] (kept as they are)."""
        row, pos = mask.nonzero(as_tuple=True)  # [N], [N], row-major
        at = (lambda ids: None if ids is None else ids[row, pos])  # [B, L] -> [N]
        return cls(keys[row, pos], row, pos, mask, items=at(items), categories=at(categories),
                   query_items=query_items, query_categories=query_categories)

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    def lengths(self) -> torch.Tensor:
        """[B] listed positions per row (contiguous, row-major)."""
        return self.counts if self.counts is not None else self.mask.sum(1)

    def narrow(self, columns: slice) -> "Packed":
        """The same positions with keys[:, columns] (one attention group of the embedding), negatives alike."""
        negatives = None if self.negatives is None else self.negatives[:, columns]
        return dataclasses.replace(self, keys=self.keys[:, columns], negatives=negatives)

    def at_rows(self, x: torch.Tensor) -> torch.Tensor:
        """A per-row tensor x [B, ...] -> [N, ...], row ``row[n]`` for each real position.

        ``index_select``, not ``x[row]``: the backward of advanced indexing accumulates with atomic adds
        on CPU when several threads run, so repeated rows would make gradients (and a seeded run's
        metrics) vary from run to run; index_select's backward (index_add) adds in a fixed order.
        """
        return x.index_select(0, self.row)

    def segment_sum(self, values: torch.Tensor) -> torch.Tensor:
        """values [N, ...] -> [B, ...]: per batch row, the sum over its real positions (0 for an empty row)."""
        out = values.new_zeros((self.rows, *values.shape[1:]))
        return out.index_add(0, self.row, values)

    def real_keys(self) -> torch.Tensor:
        """keys [N, D] with listed padding positions (a static batch's fillers) zeroed."""
        return self.keys if self.real is None else self.keys.masked_fill(~self.real.unsqueeze(-1), 0)

    def weighted_sum(self, weights: torch.Tensor) -> torch.Tensor:
        """weights [B, L] (or [N] per real position) -> [B, D] = sum_l weights[b, l] * keys[b, l]."""
        w = weights[self.row, self.pos] if weights.dim() == 2 else weights  # [N]
        return self.segment_sum(w.unsqueeze(-1) * self.keys)

    def to_padded(self, values: torch.Tensor) -> torch.Tensor:
        """values [N, ...] -> [B, L, ...], 0 at padding."""
        out = values.new_zeros((*self.mask.shape, *values.shape[1:]))
        return out.index_put((self.row, self.pos), values)

    def padded_keys(self) -> torch.Tensor:
        """keys as [B, L, D], 0 at padding (for poolers that need the padded layout)."""
        return self.to_padded(self.keys)
