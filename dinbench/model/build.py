"""Building a run's model from its config, and saving and loading its weights.

``build_model(cfg, prepared)`` is the one way a CTRModel is made from a RunConfig (training, the
grid's early check, reloading a saved run). ``load_model`` turns a completed run's record and its
``model.pt`` back into that model, through ``dinbench.config.config_from_record``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dinbench import optimizers, poolers
from dinbench.atomic import write_atomic
from dinbench.config import RunConfig, config_from_record
from dinbench.errors import DinbenchError
from dinbench.model.ctr import CTRModel
from dinbench.prepared import Prepared

MODEL_FILE = "model.pt"  # the selected epoch's state_dict (tensors only: loads with weights_only=True)


def pooler_factory(cfg: RunConfig) -> Callable[[int], poolers.Pooler]:
    """``dim -> pooler`` with the config's pooler options (its pooler's own, see Pooler.options)."""
    return lambda dim: poolers.build(cfg.pooler, dim, **cfg.pooler_options)


def build_model(cfg: RunConfig, prepared: Prepared, sparse_embeddings: bool | None = None) -> CTRModel:
    """The model ``cfg`` describes, sized for ``prepared``. ``sparse_embeddings``: sparse gradients
    for the embedding tables (default: when ``cfg.optimizer`` is row-sparse); the weights and the
    numbers do not depend on it."""
    if sparse_embeddings is None:
        sparse_embeddings = optimizers.is_row_sparse(cfg.optimizer)
    return CTRModel(
        prepared.n_items,
        prepared.n_categories,
        pooler_factory(cfg),
        embedding_dim=cfg.embedding_dim,
        mlp_hidden=tuple(cfg.mlp_hidden),
        init_std=cfg.init_std,
        architecture=cfg.architecture,
        attention_groups=cfg.attention_groups,
        mlp_activation=cfg.mlp_activation,
        sparse_embeddings=sparse_embeddings,
    )


def check_buildable(cfg: RunConfig) -> None:
    """Build a tiny model from ``cfg`` so bad pooler options fail before any data is touched."""
    probe = type("Probe", (), {"n_items": 1, "n_categories": 1})()
    try:
        build_model(cfg, probe)  # type: ignore[arg-type]
    except ValueError as exc:
        raise DinbenchError(f"pooler {cfg.pooler}: {exc}") from None


def save_model(path: Path, model: nn.Module) -> None:
    """Write ``model``'s weights (a plain state_dict, CPU tensors) atomically to ``path``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_model(run_dir: Path, record: dict[str, Any], prepared: Prepared) -> CTRModel:
    """Rebuild the model of a completed run from its record and saved weights (CPU, eval mode).

    Loaded with ``weights_only=True``: a results folder from elsewhere cannot run code.
    """
    name = (record.get("artifacts") or {}).get("model")
    if not name or not (run_dir / name).exists():
        raise DinbenchError(f"run {run_dir.name} has no saved model ({MODEL_FILE}); rerun it with this version")
    cfg = config_from_record(record["config"], device="cpu")
    model = build_model(cfg, prepared)
    model.load_state_dict(torch.load(run_dir / name, map_location="cpu", weights_only=True))
    return model.eval()
