"""The Embedding&MLP CTR model: embeddings -> pooler -> MLP (``dinbench.model.ctr.CTRModel``).

Deliberately imports nothing: poolers import ``dinbench.model.activations``, and the model imports
the poolers, so an eager import here would make the two packages import each other.
"""
