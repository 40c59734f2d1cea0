"""Training one run: one dataset, one pooler, one seed -> one run record.

Model selection is honest: after every epoch the model is scored on the valid split, the epoch
with the best valid GAUC is kept (early stopping after ``patience`` epochs without improvement),
and the test split is scored once, with that epoch's weights. ``protocol="paper"`` reproduces the
DIN paper instead: train on train + valid (k = 1..n-2), no validation, fixed epochs, test once at
the last epoch.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from dinbench import checkpoint, poolers
from dinbench.checkpoint import RunInterrupted, StopFlag
from dinbench.batches import (
    BehaviourStore,
    SampleSet,
    batch_indices,
    bucketed_batch_indices,
    length_sorted_indices,
)
from dinbench.atomic import write_atomic
from dinbench.config import RunConfig, config_from_record
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
    """SGD or Adam over every parameter. On CPU and CUDA the fused kernels are used (one pass over all
    parameters instead of one small op per tensor and step: Adam's step is ~5x cheaper on CPU); they
    compute the same update up to float rounding."""
    devices = {p.device.type for p in model.parameters()}
    fused = {"fused": True} if devices <= {"cpu", "cuda"} else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, **fused)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, **fused)


MAX_DEFAULT_THREADS = 4  # more threads only add synchronisation to these small matrices


def default_threads() -> int:
    """Half the cores this process may run on (its CPU affinity, so containers count right), 1 to 4.

    Half, because an oversubscribed CPU is catastrophic for torch's OpenMP threads: on a 2-core
    machine with other busy processes, `din` trained at 19,300 rows/s on 1 thread and 790 rows/s on
    2 (threads spin at every barrier waiting for a descheduled sibling). Grids of runs are better
    served by one job per core (docs/performance.md).
    """
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    return max(1, min(available // 2, MAX_DEFAULT_THREADS))


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (``None``: ``default_threads()``); returns the count in use."""
    if threads is None:
        threads = default_threads()
    if threads < 1:
        raise DinbenchError(f"--threads must be at least 1 (got {threads})")
    torch.set_num_threads(int(threads))
    return int(threads)


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


def autocast(cfg_precision: str, device: torch.device):
    """The forward pass's precision context: a no-op for fp32, bfloat16 autocast for bf16 (any device
    torch supports it on; parameters, gradients and the optimizer stay fp32, the loss is fp32)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg_precision == "bf16")


@torch.inference_mode()
def predict(
    model: CTRModel, store: BehaviourStore, samples: SampleSet, batch_size: int, device, *, attention: bool = False,
    precision: str = "fp32",
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Click probabilities for every sample, in order.

    With ``attention=True`` returns ``(probs, attention_sum)`` from the same single pass:
    ``attention_sum`` is each sample's sum of the pooler's weights over the real (unpadded) history
    positions, NaN for every sample when the pooler returns no weights.
    """
    model.eval()
    out = np.empty(len(samples), dtype=np.float64)
    attn = np.full(len(samples), np.nan, dtype=np.float64) if attention else None
    for idx in length_sorted_indices(samples.hist_len, batch_size):
        batch = store.gather(samples, idx).to(device)
        with autocast(precision, torch.device(device)):
            logits, weights = model(batch)
        out[idx] = torch.sigmoid(logits).double().cpu().numpy()
        if attn is not None and weights is not None:
            attn[idx] = weights.double().sum(-1).cpu().numpy()  # poolers give padding weight 0
    return (out, attn) if attention else out


def score(model, store, samples: SampleSet, cfg: RunConfig, device) -> dict[str, float]:
    probs = predict(model, store, samples, cfg.eval_batch_size, device, precision=cfg.precision)
    return evaluate(samples.user, samples.label, probs)


PREDICTION_FILES = {"test": "predictions_test.parquet", "valid": "predictions_valid.parquet"}
MODEL_FILE = "model.pt"  # the selected epoch's state_dict (tensors only: loads with weights_only=True)


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


def predictions_frame(samples: SampleSet, probs: np.ndarray, attention_sum: np.ndarray) -> pd.DataFrame:
    """One row per sample, in split order: user, label, score (probability), hist_len, attention_sum."""
    return pd.DataFrame({
        "user": np.asarray(samples.user),
        "label": np.asarray(samples.label, dtype=np.float32),
        "score": np.asarray(probs, dtype=np.float64),
        "hist_len": np.asarray(samples.hist_len, dtype=np.int64),
        "attention_sum": np.asarray(attention_sum, dtype=np.float64),
    })


def write_predictions(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, engine="pyarrow", index=False))


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
    valid: SampleSet | None = None
    # valid (probs, attention_sum) at the selected epoch; None under the paper protocol
    valid_predictions: tuple[np.ndarray, np.ndarray] | None = None


def _training_state(model, optimizer, scheduler, loop: dict[str, Any]) -> dict[str, Any]:
    """Everything the rest of training depends on, for a checkpoint (see dinbench.checkpoint)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "torch_rng": torch.get_rng_state(),
        **loop,
    }


def fit(
    cfg: RunConfig,
    prepared: Prepared,
    progress: Progress | None = None,
    *,
    stop: Callable[[], bool] | None = None,
    checkpoint_dir: Path | None = None,
    resume: dict[str, Any] | None = None,
    dist: Any = None,
) -> Fitted:
    """Train one model under ``cfg`` and return it at the epoch chosen by the protocol.

    ``stop`` is read at every batch boundary; when it returns True the training state is saved to
    ``checkpoint_dir`` and RunInterrupted is raised. ``resume`` is such a saved state: training
    continues from it exactly where it stopped. ``dist`` (a ``dinbench.distributed.Distributed``)
    trains this rank's slice of every batch under DistributedDataParallel (see that module).
    """
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
    net = model if dist is None else dist.wrap(model)  # what trains; ``model`` keeps the plain weights
    predict_all = predict if dist is None else dist.predict  # every rank gets every prediction
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

    loop: dict[str, Any] = {
        "epoch": 1, "batch": 0, "epoch_rng": None, "epoch_loss": 0.0, "epoch_seconds": 0.0,
        "history": [], "best_state": None, "best_epoch": 0, "best_gauc": -math.inf, "stale": 0,
        "train_seconds": 0.0, "train_rows": 0, "best_valid": None,
    }
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume["scheduler"] is not None:
            scheduler.load_state_dict(resume["scheduler"])
        torch.set_rng_state(resume["torch_rng"])
        loop.update({k: resume[k] for k in loop if k in resume})
    history = loop["history"]
    stopped_early = False
    while loop["epoch"] <= cfg.epochs and not stopped_early:
        epoch = loop["epoch"]
        net.train()
        t0 = time.perf_counter()
        if loop["epoch_rng"] is None:  # a fresh epoch (not one resumed mid-way)
            loop["epoch_rng"] = copy.deepcopy(rng.bit_generator.state)
        rng.bit_generator.state = loop["epoch_rng"]
        if cfg.bucket:
            batches = bucketed_batch_indices(train.hist_len, cfg.batch_size, rng)
        else:
            batches = batch_indices(len(train), cfg.batch_size, rng)
        for i in range(loop["batch"], len(batches)):
            if stop is not None and stop():
                loop["batch"] = i
                loop["epoch_seconds"] += time.perf_counter() - t0
                _interrupt(cfg, checkpoint_dir, _training_state(model, optimizer, scheduler, loop))
            idx = batches[i]
            if dist is not None:
                idx, n_real = dist.shard(batches[i])  # this rank's slice of the global batch
            batch = store.gather(train, idx).to(device)
            with autocast(cfg.precision, device):
                logits, _ = net(batch)
            logits = logits.float()
            if dist is None:
                loss = objective = loss_fn(logits, batch.label)
            else:  # loss: the global batch's mean, identical on every rank
                objective, loss = dist.objective(logits, batch.label, n_real, len(batches[i]))
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
            loop["epoch_loss"] += value * len(batches[i])
            if progress is not None and (i % 20 == 0 or i == len(batches) - 1):
                progress(f"epoch {epoch}/{cfg.epochs}", i + 1, len(batches))
        seconds = loop["epoch_seconds"] + time.perf_counter() - t0
        loop["train_seconds"] += seconds
        loop["train_rows"] += len(train)
        entry: dict[str, Any] = {"epoch": epoch, "train_loss": loop["epoch_loss"] / len(train), "train_seconds": seconds}
        history.append(entry)
        if valid is not None:
            valid_probs, valid_attn = predict_all(model, store, valid, cfg.eval_batch_size, device, attention=True,
                                                  precision=cfg.precision)
            entry["valid"] = evaluate(valid.user, valid.label, valid_probs)
            gauc_now = entry["valid"]["gauc"]
            if gauc_now > loop["best_gauc"]:
                # tensors, so that a checkpoint (loaded with weights_only) can hold them
                loop.update(best_gauc=gauc_now, best_epoch=epoch, stale=0,
                            best_state=copy.deepcopy(model.state_dict()),
                            best_valid=[torch.from_numpy(valid_probs), torch.from_numpy(valid_attn)])
            else:
                loop["stale"] += 1
                stopped_early = loop["stale"] > cfg.patience
        else:
            loop["best_epoch"] = epoch
        loop.update(epoch=epoch + 1, batch=0, epoch_rng=None, epoch_loss=0.0, epoch_seconds=0.0)
    if loop["best_state"] is not None:
        model.load_state_dict(loop["best_state"])
    train_seconds = loop["train_seconds"]
    valid_predictions = None
    if valid is not None:
        if loop["best_valid"] is not None and loop["best_state"] is not None:
            valid_predictions = tuple(t.numpy() for t in loop["best_valid"])
        else:  # no epoch was ever selected (NaN valid GAUC): the model is the last epoch's
            valid_predictions = predict_all(model, store, valid, cfg.eval_batch_size, device, attention=True,
                                            precision=cfg.precision)
    return Fitted(
        model=model, store=store, test=test, history=history, best_epoch=loop["best_epoch"], train_rows=len(train),
        train_rows_per_s=loop["train_rows"] / train_seconds if train_seconds > 0 else None, device=device,
        valid=valid, valid_predictions=valid_predictions,
    )


def _interrupt(cfg: RunConfig, checkpoint_dir: Path | None, state: dict[str, Any]) -> None:
    """Save ``state`` (when there is somewhere to save it) and raise RunInterrupted."""
    where = checkpoint.save(checkpoint_dir, state) if checkpoint_dir is not None else None
    raise RunInterrupted(
        f"{cfg.pooler} seed {cfg.seed} interrupted at epoch {state['epoch']}, step {state['batch']}"
        + (f"; checkpoint saved in {where}" if where is not None else "")
    )


def _record_head(cfg: RunConfig, prepared: Prepared, run_dir: Path, status: str) -> dict[str, Any]:
    """The fields every record has, whatever became of the run."""
    return {
        "schema": SCHEMA,
        "run_id": run_dir.name,
        "status": status,
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
    }


def resume_config(run_dir: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The configuration and record of an interrupted run, refused unless it can be resumed."""
    import json

    path = run_dir / "record.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DinbenchError(f"no run '{run_dir.name}' in {run_dir.parent}; `dinbench report` lists the runs") from None
    except (OSError, ValueError) as exc:
        raise DinbenchError(f"cannot read {path} ({exc.__class__.__name__}); start the run again") from None
    if record.get("status") != "interrupted":
        raise DinbenchError(
            f"run {run_dir.name} is {record.get('status', 'of unknown status')}, not interrupted; only interrupted runs resume"
        )
    return config_from_record(record["config"]), record


def train_run(
    cfg: RunConfig,
    prepared: Prepared,
    results_dir: Path,
    progress: Progress | None = None,
    *,
    stop: Callable[[], bool] | None = None,
    resume_dir: Path | None = None,
    dist: Any = None,
) -> tuple[Path, dict[str, Any]]:
    """Train and evaluate one run; write and return its record.

    The run directory is claimed first and holds a ``running`` record from the start. A run whose
    loss turns NaN or infinite stops at once: its record is written with status ``failed`` and the
    reason (``report`` never shows it as a result), and DinbenchError says so. SIGINT, SIGTERM or
    ``stop()`` returning True saves a checkpoint, marks the record ``interrupted`` and raises
    RunInterrupted; ``resume_dir`` (an interrupted run's directory) continues such a run.
    ``dist``: one run across torchrun's processes (dinbench.distributed); only rank 0 writes into
    ``results_dir`` and signals are left to torchrun (no checkpoint).
    """
    resolve_device(cfg.device)
    started, previous_seconds, resume = time.time(), 0.0, None
    if resume_dir is not None:
        _, old = resume_config(resume_dir)
        if old["dataset"]["fingerprint"] != prepared.fingerprint:
            raise DinbenchError(
                f"dataset '{prepared.name}' changed since run {resume_dir.name} started (fingerprint "
                f"{old['dataset']['fingerprint'][:12]} then, {prepared.fingerprint[:12]} now); start a new run"
            )
        resume = checkpoint.load(resume_dir)
        run_dir, previous_seconds = resume_dir, float(old.get("wall_seconds", 0.0))
    else:
        out = results_dir if dist is None else dist.results_dir(results_dir)
        run_dir = new_run_dir(out, prepared.name, cfg.pooler, cfg.seed)
    head = _record_head(cfg, prepared, run_dir, "running")
    write_record(run_dir, {**head, **environment()})

    def elapsed() -> float:
        return previous_seconds + time.time() - started

    flag = StopFlag()
    try:
        with flag if dist is None else contextlib.nullcontext():
            fitted = fit(cfg, prepared, progress, stop=lambda: bool(flag) or bool(stop and stop()),
                         checkpoint_dir=run_dir, resume=resume, dist=dist)
    except Diverged as exc:
        write_record(run_dir, {**head, "status": "failed", "reason": str(exc), "wall_seconds": elapsed(), **environment()})
        raise DinbenchError(
            f"{cfg.pooler} seed {cfg.seed}: {exc}; try a lower --lr (now {cfg.lr}) or --grad-clip 5. "
            f"Record marked failed: {run_dir / 'record.json'}"
        ) from None
    except RunInterrupted as exc:
        reason = f"{flag.name if flag else 'stop requested'}: {exc}"
        write_record(run_dir, {**head, "status": "interrupted", "reason": reason, "wall_seconds": elapsed(),
                               "resume": f"dinbench run --resume {run_dir.name}", **environment()})
        exc.run_dir = run_dir
        raise
    # one pass over test gives both the metrics and the saved predictions
    test_probs, test_attn = (predict if dist is None else dist.predict)(
        fitted.model, fitted.store, fitted.test, cfg.eval_batch_size, fitted.device, attention=True,
        precision=cfg.precision)
    test_metrics = evaluate(fitted.test.user, fitted.test.label, test_probs)
    model, valid = fitted.model, cfg.protocol != "paper"
    saved = {"test": PREDICTION_FILES["test"]}
    write_predictions(run_dir / saved["test"], predictions_frame(fitted.test, test_probs, test_attn))
    if fitted.valid is not None and fitted.valid_predictions is not None:
        saved["valid"] = PREDICTION_FILES["valid"]
        write_predictions(run_dir / saved["valid"], predictions_frame(fitted.valid, *fitted.valid_predictions))
    save_model(run_dir / MODEL_FILE, model)
    record = {
        **head,
        "status": "completed",
        "selection": "best valid GAUC" if valid else "last epoch (paper protocol: no validation split)",
        "epochs": fitted.history,
        "best_epoch": fitted.best_epoch,
        "test": test_metrics,
        "predictions": saved,
        "artifacts": {"model": MODEL_FILE},
        "train_rows": int(fitted.train_rows),
        "train_rows_per_s": fitted.train_rows_per_s,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "device": str(fitted.device),
        "world_size": 1 if dist is None else dist.world,
        **({"distributed": dist.about()} if dist is not None else {}),
        "wall_seconds": elapsed(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        **({"resumed": True} if resume is not None else {}),
        **environment(),
    }
    write_record(run_dir, record)
    checkpoint.remove(run_dir)
    return run_dir, record
