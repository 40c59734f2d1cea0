"""The Embedding&MLP CTR model: embeddings -> pooler -> MLP."""

from dinbench.model.ctr import CTRModel

__all__ = ["CTRModel"]
