"""Training one run: one dataset, one pooler, one seed -> one run record.

Model selection is honest: after every epoch the model is scored on the valid split, the epoch
with the best valid GAUC is kept (early stopping after ``patience`` epochs without improvement),
and the test split is scored once, with that epoch's weights. ``protocol="paper"`` reproduces the
DIN paper instead: train on train + valid (k = 1..n-2), no validation, fixed epochs, test once at
the last epoch.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from dinbench import poolers
from dinbench.batches import (
    BehaviourStore,
    SampleSet,
    batch_indices,
    bucketed_batch_indices,
    length_sorted_indices,
)
from dinbench.errors import DinbenchError
from dinbench.metrics import evaluate
from dinbench.model import CTRModel
from dinbench.prepared import Prepared
from dinbench.records import SCHEMA, environment, new_run_dir, write_record

PROTOCOLS = ("din", "paper")


@dataclass
class RunConfig:
    """Everything that decides a run's numbers. Defaults: see docs/defaults.md."""

    dataset: str = "synthetic"
    pooler: str = "din:none"
    seed: int = 0
    protocol: str = "din"  # din: select epoch on valid; paper: train+valid, fixed epochs, no selection
    epochs: int = 10  # at most (early stopping on valid GAUC)
    patience: int = 2
    batch_size: int = 256
    eval_batch_size: int = 4096
    embedding_dim: int = 32  # per field: item and category, so the model works on 2 * 32
    mlp_hidden: tuple[int, ...] = (200, 80)
    max_len: int = 50
    bucket: bool = False  # batch rows of similar history length together (less padding)
    lr: float = 1e-3
    init_std: float = 0.01
    device: str = "cpu"

    def validate(self) -> None:
        positive = ("epochs", "batch_size", "eval_batch_size", "embedding_dim", "max_len")
        for name in positive:
            if getattr(self, name) < 1:
                raise DinbenchError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.patience < 0:
            raise DinbenchError(f"--patience must be 0 or more (got {self.patience})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise DinbenchError(f"--lr must be a positive number (got {self.lr})")
        if self.init_std <= 0:
            raise DinbenchError(f"--init-std must be positive (got {self.init_std})")
        if self.protocol not in PROTOCOLS:
            raise DinbenchError(f"unknown protocol '{self.protocol}'; choose from {', '.join(PROTOCOLS)}")
        self.pooler = poolers.canonical(self.pooler)

    def selection_key(self) -> dict[str, Any]:
        """The config without seed, pooler and device: runs that differ only there are comparable."""
        out = asdict(self)
        for k in ("seed", "pooler", "device", "eval_batch_size"):
            out.pop(k)
        out["mlp_hidden"] = list(out["mlp_hidden"])
        return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DinbenchError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DinbenchError("--device mps was asked for but MPS is not available; use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise DinbenchError(f"unknown device '{name}'; choose from auto, cpu, cuda, mps")
    return torch.device(name)


@torch.inference_mode()
def predict(model: CTRModel, store: BehaviourStore, samples: SampleSet, batch_size: int, device) -> np.ndarray:
    """Click probabilities for every sample, in order."""
    model.eval()
    out = np.empty(len(samples), dtype=np.float64)
    for idx in length_sorted_indices(samples.hist_len, batch_size):
        logits, _ = model(store.gather(samples, idx).to(device))
        out[idx] = torch.sigmoid(logits).double().cpu().numpy()
    return out


def score(model, store, samples: SampleSet, cfg: RunConfig, device) -> dict[str, float]:
    probs = predict(model, store, samples, cfg.eval_batch_size, device)
    return evaluate(samples.user, samples.label, probs)


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def train_run(
    cfg: RunConfig,
    prepared: Prepared,
    results_dir: Path,
    progress: Progress | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train and evaluate one run; write and return its record."""
    cfg.validate()
    device = resolve_device(cfg.device)
    started = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    store = BehaviourStore(prepared)
    if cfg.protocol == "paper":
        train_frame = pd.concat([prepared.splits["train"], prepared.splits["valid"]], ignore_index=True)
        valid = None
    else:
        train_frame = prepared.splits["train"]
        valid = store.samples(prepared.splits["valid"], cfg.max_len)
    train = store.samples(train_frame, cfg.max_len)
    test = store.samples(prepared.splits["test"], cfg.max_len)
    if len(train) == 0:
        raise DinbenchError(f"dataset '{prepared.name}' has no training samples")

    dim = 2 * cfg.embedding_dim
    model = CTRModel(
        prepared.n_items,
        prepared.n_categories,
        poolers.build(cfg.pooler, dim),
        embedding_dim=cfg.embedding_dim,
        mlp_hidden=tuple(cfg.mlp_hidden),
        init_std=cfg.init_std,
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.BCEWithLogitsLoss()

    history: list[dict[str, Any]] = []
    best_state, best_epoch, best_gauc, stale = None, 0, -math.inf, 0
    train_seconds, train_rows = 0.0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        if cfg.bucket:
            batches = bucketed_batch_indices(train.hist_len, cfg.batch_size, rng)
        else:
            batches = batch_indices(len(train), cfg.batch_size, rng)
        total_loss = 0.0
        for i, idx in enumerate(batches):
            batch = store.gather(train, idx).to(device)
            logits, _ = model(batch)
            loss = loss_fn(logits, batch.label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            if progress is not None and (i % 20 == 0 or i == len(batches) - 1):
                progress(f"epoch {epoch}/{cfg.epochs}", i + 1, len(batches))
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        train_rows += len(train)
        entry: dict[str, Any] = {"epoch": epoch, "train_loss": total_loss / len(train), "train_seconds": seconds}
        if valid is not None:
            entry["valid"] = score(model, store, valid, cfg, device)
            history.append(entry)
            gauc_now = entry["valid"]["gauc"]
            if gauc_now > best_gauc:
                best_gauc, best_epoch, stale = gauc_now, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale > cfg.patience:
                    break
        else:
            history.append(entry)
            best_epoch = epoch
    if best_state is not None:
        model.load_state_dict(best_state)
    test_metrics = score(model, store, test, cfg, device)

    run_dir = new_run_dir(results_dir, prepared.name, cfg.pooler, cfg.seed)
    record = {
        "schema": SCHEMA,
        "run_id": run_dir.name,
        "status": "completed",
        "dataset": {
            "name": prepared.name,
            "fingerprint": prepared.fingerprint,
            "counts": prepared.manifest["counts"],
            "source": prepared.manifest.get("source", {}).get("kind"),
        },
        "pooler": cfg.pooler,
        "seed": cfg.seed,
        "config": {**asdict(cfg), "mlp_hidden": list(cfg.mlp_hidden)},
        "config_key": cfg.selection_key(),
        "selection": "best valid GAUC" if valid is not None else "last epoch (paper protocol: no validation split)",
        "epochs": history,
        "best_epoch": best_epoch,
        "test": test_metrics,
        "train_rows": int(len(train)),
        "train_rows_per_s": train_rows / train_seconds if train_seconds > 0 else None,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "device": str(device),
        "wall_seconds": time.time() - started,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        **environment(),
    }
    write_record(run_dir, record)
    return run_dir, record


def config_fields() -> list[str]:
    return [f.name for f in fields(RunConfig)]
