"""Mini-batch aware L2 regularisation of the embeddings (DIN paper, Section 4.3, Eq. 4).

Full L2 over embedding tables with millions of rows is too expensive and penalises rows that never
appear in the batch. The paper regularises only the rows present in the mini-batch, each scaled by
the inverse of its frequency n_j over the training samples:

    L2_batch = lambda * sum over features j present in the batch of ||w_j||^2 / n_j
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class MiniBatchL2(nn.Module):
    def __init__(self, item_counts: np.ndarray, category_counts: np.ndarray, weight: float) -> None:
        """``*_counts[j]`` = occurrences of id j in the training samples (candidates and histories)."""
        super().__init__()
        self.weight = weight
        self.register_buffer("inv_item", torch.from_numpy(1.0 / np.maximum(item_counts, 1)).float())
        self.register_buffer("inv_cat", torch.from_numpy(1.0 / np.maximum(category_counts, 1)).float())

    def forward(self, table_item: nn.Embedding, table_cat: nn.Embedding, items, categories) -> torch.Tensor:
        """items / categories: id tensors of any shape (0 = padding, ignored)."""
        total = torch.zeros((), device=table_item.weight.device)
        for table, inv, ids in ((table_item, self.inv_item, items), (table_cat, self.inv_cat, categories)):
            present = torch.unique(ids)
            present = present[present > 0]
            # through the table's own lookup, so a sparse table keeps a sparse gradient
            rows = F.embedding(present, table.weight, sparse=True) if table.sparse else table.weight[present]
            total = total + (rows.pow(2).sum(-1) * inv[present]).sum()
        return self.weight * total


def feature_counts(beh_ids: np.ndarray, hist_start: np.ndarray, hist_len: np.ndarray,
                   cand_ids: np.ndarray, n: int) -> np.ndarray:
    """Occurrences of every id 0..n in the training samples: as candidate and inside histories.

    A behaviour at row r sits in the history of every sample whose window covers r; the counts
    come from a difference array over the windows, so nothing is materialised per sample.
    """
    diff = np.zeros(len(beh_ids) + 1, dtype=np.int64)
    np.add.at(diff, hist_start, 1)
    np.add.at(diff, hist_start + hist_len, -1)
    coverage = np.cumsum(diff[:-1])  # [rows] how many training histories include behaviour r
    counts = np.bincount(beh_ids, weights=coverage, minlength=n + 1)
    counts += np.bincount(cand_ids, minlength=n + 1)
    return counts
