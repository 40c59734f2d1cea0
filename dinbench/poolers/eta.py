"""``eta``: End-to-end Target Attention (Chen et al., 2021): SimHash retrieval, then attention.

Each key and the candidate get a ``hash_bits``-bit SimHash code, the signs of their projections on
fixed random hyperplanes (a registered buffer [D, hash_bits], drawn from torch's generator when the
pooler is built and saved with the model; never trained). The Hamming distance between two codes
estimates the angle between the vectors (each bit differs with probability angle / π), so the
``top_k`` keys of smallest distance approximate the top_k by cosine to the candidate, at the cost
of a bit comparison. Equal distances (frequent with few bits) go to the most recent positions.
Then din's activation unit attends over the retrieved keys, softmax-normalised
(dinbench.poolers.retrieval). The hashing runs without gradient; the embeddings are learned
end to end through the attention, as the paper's title says.
"""

from __future__ import annotations

import torch

from dinbench.poolers import about
from dinbench.poolers.retrieval import RetrievalPooler


class ETAPooler(RetrievalPooler, about=about.ETA):
    """q [B, D], keys [B, L, D], mask [B, L] -> pooled [B, D], weights [B, L] (softmax over the retrieved)."""

    def __init__(self, dim: int, top_k: int, hash_bits: int, attention_hidden: tuple[int, ...],
                 attention_activation: str) -> None:
        if hash_bits < 1:
            raise ValueError(f"hash_bits must be at least 1 (got {hash_bits})")
        super().__init__(dim, top_k, attention_hidden, attention_activation)
        self.hash_bits = hash_bits
        self.register_buffer("hyperplanes", torch.randn(dim, hash_bits))  # [D, bits], fixed

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D] -> SimHash code [..., bits] bool (the sign of each hyperplane projection)."""
        return (x @ self.hyperplanes.to(x.dtype)) > 0

    def retrieval_scores(self, query, packed):
        with torch.no_grad():
            differ = self.codes(packed.keys) != packed.at_rows(self.codes(query))  # [N, bits]
            return -differ.sum(-1).float()  # [N] minus the Hamming distance
