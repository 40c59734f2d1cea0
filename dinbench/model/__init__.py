"""The Embedding&MLP CTR model: embeddings -> pooler -> MLP (``dinbench.model.ctr.CTRModel``), and
building a model from a run config or loading a saved one (``dinbench.model.build``).

Above ``dinbench.poolers`` and ``dinbench.layers``; imports nothing eagerly.
"""
