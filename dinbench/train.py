"""Training one run: one dataset, one pooler, one seed -> one run record.

Model selection is honest: after every epoch the model is scored on the valid split, the epoch
with the best valid GAUC is kept (early stopping after ``patience`` epochs without improvement),
and the test split is scored once, with that epoch's weights. ``protocol="paper"`` reproduces the
DIN paper instead: train on train + valid (k = 1..n-2), no validation, fixed epochs, test once at
the last epoch.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from dataclasses import dataclass
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
from dinbench.config import PROTOCOLS, RunConfig  # noqa: F401  (re-exported)
from dinbench.errors import DinbenchError
from dinbench.metrics import evaluate
from dinbench.model.ctr import CTRModel
from dinbench.model.regularization import MiniBatchL2, feature_counts
from dinbench.prepared import Prepared
from dinbench.records import SCHEMA, environment, new_run_dir, write_record


def pooler_factory(cfg: RunConfig) -> Callable[[int], poolers.Pooler]:
    """``dim -> pooler`` with those of ``cfg.pooler_options`` that the pooler's constructor takes."""
    name, _ = poolers.parse_spec(cfg.pooler)
    accepted = inspect.signature(poolers.REGISTRY[name].cls.__init__).parameters
    options = {k: v for k, v in cfg.pooler_options.items() if k in accepted}
    return lambda dim: poolers.build(cfg.pooler, dim, **options)


def build_model(cfg: RunConfig, prepared: Prepared) -> CTRModel:
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
    )


def check_buildable(cfg: RunConfig) -> None:
    """Build a tiny model from ``cfg`` so bad pooler options fail before any data is touched."""
    probe = type("Probe", (), {"n_items": 1, "n_categories": 1})()
    try:
        build_model(cfg, probe)  # type: ignore[arg-type]
    except ValueError as exc:
        raise DinbenchError(f"pooler {cfg.pooler}: {exc}") from None


def make_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


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


class Diverged(Exception):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"training loss became {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


@dataclass
class Fitted:
    """A trained model at its selected epoch, with what the run record needs."""

    model: CTRModel
    store: BehaviourStore
    test: SampleSet
    history: list[dict[str, Any]]
    best_epoch: int
    train_rows: int
    train_rows_per_s: float | None
    device: torch.device


def fit(cfg: RunConfig, prepared: Prepared, progress: Progress | None = None) -> Fitted:
    """Train one model under ``cfg`` and return it at the epoch chosen by the protocol."""
    cfg.validate()
    device = resolve_device(cfg.device)
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

    model = build_model(cfg, prepared).to(device)
    optimizer = make_optimizer(cfg, model)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_decay_steps, gamma=cfg.lr_decay)
        if cfg.lr_decay_steps
        else None
    )
    regularizer = None
    if cfg.l2_minibatch > 0:
        regularizer = MiniBatchL2(
            feature_counts(store.item, train.hist_start, train.hist_len, train.item, prepared.n_items),
            feature_counts(store.category, train.hist_start, train.hist_len, train.category, prepared.n_categories),
            cfg.l2_minibatch,
        ).to(device)
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
            objective = loss
            if regularizer is not None:
                emb = model.embeddings
                objective = loss + regularizer(
                    emb.item, emb.category,
                    torch.cat([batch.item[:, None], batch.hist_item], 1),
                    torch.cat([batch.category[:, None], batch.hist_category], 1),
                )
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            value = loss.item()
            if not math.isfinite(value):
                raise Diverged(epoch, i + 1, value)
            total_loss += value * len(idx)
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
    return Fitted(
        model=model, store=store, test=test, history=history, best_epoch=best_epoch, train_rows=len(train),
        train_rows_per_s=train_rows / train_seconds if train_seconds > 0 else None, device=device,
    )


def train_run(
    cfg: RunConfig,
    prepared: Prepared,
    results_dir: Path,
    progress: Progress | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train and evaluate one run; write and return its record.

    A run whose loss turns NaN or infinite stops at once: its record is written with status
    ``failed`` and the reason (``report`` never shows it as a result), and DinbenchError says so.
    """
    started = time.time()
    try:
        fitted = fit(cfg, prepared, progress)
    except Diverged as exc:
        run_dir = new_run_dir(results_dir, prepared.name, cfg.pooler, cfg.seed)
        write_record(run_dir, {
            "schema": SCHEMA, "run_id": run_dir.name, "status": "failed", "reason": str(exc),
            "dataset": {"name": prepared.name, "fingerprint": prepared.fingerprint},
            "pooler": cfg.pooler, "architecture": cfg.architecture, "seed": cfg.seed, "config": cfg.to_dict(),
            "wall_seconds": time.time() - started, **environment(),
        })
        raise DinbenchError(
            f"{cfg.pooler} seed {cfg.seed}: {exc}; try a lower --lr (now {cfg.lr}) or --grad-clip 5. "
            f"Record marked failed: {run_dir / 'record.json'}"
        ) from None
    test_metrics = score(fitted.model, fitted.store, fitted.test, cfg, fitted.device)
    model, history, best_epoch, valid = fitted.model, fitted.history, fitted.best_epoch, cfg.protocol != "paper"

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
        "architecture": cfg.architecture,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "config_key": cfg.selection_key(),
        "selection": "best valid GAUC" if valid else "last epoch (paper protocol: no validation split)",
        "epochs": history,
        "best_epoch": best_epoch,
        "test": test_metrics,
        "train_rows": int(fitted.train_rows),
        "train_rows_per_s": fitted.train_rows_per_s,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "device": str(fitted.device),
        "wall_seconds": time.time() - started,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        **environment(),
    }
    write_record(run_dir, record)
    return run_dir, record


