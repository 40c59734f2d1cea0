"""Training one run: one dataset, one pooler, one seed -> one run record.

Model selection is honest: after every epoch the model is scored on the valid split, the epoch
with the best valid GAUC is kept (early stopping after ``patience`` epochs without improvement),
and the test split is scored once, with that epoch's weights. ``protocol="paper"`` reproduces the
DIN paper instead: train on train + valid (k = 1..n-2), no validation, fixed epochs, test once at
the last epoch.

The loop (``Trainer.fit``) reads as one: train an epoch, score valid and keep the best epoch, stop
when patience runs out. Its state is a ``TrainState``, which is also what a checkpoint holds. The
process(es) it runs on are a ``dinbench.runtime.Runtime`` (one process, or DDP ranks), so the loop
has no branch for either. ``train_run`` wraps it into a run folder and its record.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from dinbench import allocator, checkpoint, graph_step, optim, optimizers
from dinbench.atomic import write_atomic
from dinbench.batches import (
    Batch, BehaviourStore, Rows, SampleSet, batch_indices, bucketed_batch_indices, joined, make_store,
)
from dinbench.checkpoint import RunInterrupted
from dinbench.config import CAPTURED, COMPILED, RunConfig, config_from_record
from dinbench.errors import DinbenchError
from dinbench.memory import PeakMemory
from dinbench.metrics import evaluate
from dinbench.model.build import MODEL_FILE, build_model, save_model
from dinbench.model.ctr import CTRModel
from dinbench.model.regularization import MiniBatchL2, feature_counts
from dinbench.prepared import Prepared
from dinbench.records import SCHEMA, environment, new_run_dir, write_record
from dinbench.runtime import (
    LocalRuntime, Runtime, autocast, check_compile, compile_net, cpu_compile_mode, eval_batch_size, resolve_device,
)

Progress = Callable[[str, int, int], None]  # (stage, done, total): progress_stage's text, batches of that epoch
CHECK_EVERY = 50  # steps between two reads of the loss on the host (the only syncs of a training epoch)
PREDICTION_FILES = {"test": "predictions_test.parquet", "valid": "predictions_valid.parquet"}


def progress_stage(epoch: int, epochs: int, history: list[dict[str, Any]]) -> str:
    """What a run's progress says while it trains ``epoch``: 'epoch 3/10, valid GAUC 0.8123' (the last
    scored epoch's valid GAUC; none before the first, nor under the paper protocol, which has no valid)."""
    last = next((h["valid"]["gauc"] for h in reversed(history) if "valid" in h), None)
    return f"epoch {epoch}/{epochs}" + (f", valid GAUC {last:.4f}" if last is not None else "")


class Diverged(Exception):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"training loss became {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


class CompileFailed(Exception):
    """torch.compile could not build the training step (at the run's first step)."""

    @classmethod
    def of(cls, exc: BaseException) -> "CompileFailed":
        """The error's first line (at most 300 characters; its type's name if it has no text) as the message."""
        text = str(exc).strip()
        return cls(text.splitlines()[0][:300] if text else type(exc).__name__)


def _from_torch_compile(exc: BaseException) -> bool:
    """Whether an exception comes from torch.compile's machinery (dynamo or inductor: a missing or broken C++
    toolchain, an unsupported operation), not from the model's own arithmetic."""
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor"))


class EpochLoss:
    """An epoch's summed loss (batch loss x rows) kept on the device, and the first step whose loss was
    not finite: ``add`` queues a few device ops and never waits for the device; ``check`` reads both
    back (a host sync) and raises Diverged with the epoch and that first step.

    The sum is float64 (float32 on MPS, which has no float64), added in the same order as the host
    sum of earlier versions, so an epoch's train_loss is the same to the last bit.
    """

    def __init__(self, start: float, device: torch.device) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.total = torch.tensor(start, dtype=dtype, device=device)  # []
        self.bad_step = torch.zeros((), dtype=torch.long, device=device)  # [] first non-finite step, 0: none yet
        self.bad_value = torch.zeros((), dtype=torch.float32, device=device)  # [] its loss

    def add(self, loss: torch.Tensor, rows: int, step: int) -> None:
        """Count the batch loss ``loss`` (a 0-d tensor) of ``rows`` rows at ``step`` (1-based)."""
        loss = loss.detach()
        self.total += loss.to(self.total.dtype) * rows
        first = ~torch.isfinite(loss) & (self.bad_step == 0)  # [] bool
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_value = torch.where(first, loss.float(), self.bad_value)

    def check(self, epoch: int) -> float:
        """The sum so far (a host sync); raises Diverged if a step's loss was NaN or infinite."""
        step = int(self.bad_step)
        if step:
            raise Diverged(epoch, step, float(self.bad_value))
        return float(self.total)


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


# ----------------------------------------------------------------------------- the trainer


@dataclass
class Splits:
    """One run's samples, all drawn from one store."""

    store: BehaviourStore
    train: SampleSet  # train, or train + valid under the paper protocol
    valid: SampleSet | None  # None under the paper protocol
    test: SampleSet


def make_splits(cfg: RunConfig, prepared: Prepared, device: torch.device) -> Splits:
    store = make_store(prepared, device)
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
    return Splits(store, train, valid, test)


@dataclass
class Learner:
    """What the optimizer changes, and how."""

    model: CTRModel  # the plain model: its weights are selected, saved and scored
    net: nn.Module  # what trains: ``model``, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR | None
    regularizer: MiniBatchL2 | None


def sparse_tables(cfg: RunConfig, world: int) -> bool:
    """Whether the large embedding tables train with sparse gradients (dinbench.optimizers): under a
    row-sparse optimizer, except under DDP (NCCL has no sparse all-reduce) and, unless
    ``graph_step.SPARSE_TABLES``, in a CUDA graph (which then applies the row rule with a mask over the
    whole table: fixed shapes, but a cost that grows with the catalogue)."""
    graphs = cfg.compile in CAPTURED
    return optimizers.is_row_sparse(cfg.optimizer) and world == 1 and (not graphs or graph_step.SPARSE_TABLES)


def make_learner(cfg: RunConfig, prepared: Prepared, data: Splits, device: torch.device, runtime: Runtime) -> Learner:
    check_compile(cfg.compile, device)
    graph_step.check(cfg, device, runtime.world)
    graphs = cfg.compile in CAPTURED
    # draws the initial weights from torch's seeded generator
    model = build_model(cfg, prepared, sparse_tables(cfg, runtime.world)).to(device)
    if graphs:
        graph_step.check_model(model, cfg.compile)
    net = compile_net(runtime.wrap(model), cfg.compile)  # --compile on(+cuda-graphs): the training step only, same weights
    optimizer = optim.make_optimizer(cfg.optimizer, model, cfg.lr, capturable=graphs)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_decay_steps, gamma=cfg.lr_decay)
        if cfg.lr_decay_steps
        else None
    )
    regularizer = None
    if cfg.l2_minibatch > 0:
        beh, train = prepared.behaviours, data.train
        regularizer = MiniBatchL2(
            feature_counts(beh["item"].to_numpy(np.int64), train.hist_start, train.hist_len, train.item, prepared.n_items),
            feature_counts(beh["category"].to_numpy(np.int64), train.hist_start, train.hist_len, train.category,
                           prepared.n_categories),
            cfg.l2_minibatch,
        ).to(device)
    return Learner(model, net, optimizer, scheduler, regularizer)


@dataclass
class TrainState:
    """Where training is, and the best epoch so far: everything besides the learner that the rest of
    training depends on. A checkpoint is this plus the learner's states and torch's random state."""

    epoch: int = 1  # the epoch under way (1-based)
    batch: int = 0  # the first batch of ``epoch`` still to train (non-zero only when resumed mid-epoch)
    epoch_rng: dict[str, Any] | None = None  # numpy's bit generator state at the start of ``epoch``
    epoch_loss: float = 0.0  # sum over ``epoch``'s trained rows of the batch loss
    epoch_aux_loss: float = 0.0  # the same sum of the batch's auxiliary term (models with one; Pooler.auxiliary_loss)
    epoch_seconds: float = 0.0  # seconds ``epoch`` trained before an interruption
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per finished epoch
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights
    best_epoch: int = 0
    best_gauc: float = -math.inf
    stale: int = 0  # epochs since the best one
    train_seconds: float = 0.0
    train_rows: int = 0
    best_valid: list[torch.Tensor] | None = None  # [probs, attention_sum] on valid at the best epoch

    def next_epoch(self) -> None:
        self.epoch, self.batch, self.epoch_rng, self.epoch_loss, self.epoch_seconds = self.epoch + 1, 0, None, 0.0, 0.0
        self.epoch_aux_loss = 0.0

    def to_checkpoint(self, learner: Learner) -> dict[str, Any]:
        """Everything the rest of training depends on, for a checkpoint (see dinbench.checkpoint)."""
        return {
            "model": learner.model.state_dict(),
            "optimizer": learner.optimizer.state_dict(),
            "scheduler": learner.scheduler.state_dict() if learner.scheduler is not None else None,
            "torch_rng": torch.get_rng_state(),
            **{f.name: getattr(self, f.name) for f in fields(self)},
        }

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any], learner: Learner) -> "TrainState":
        """Restore ``learner`` and torch's random state from ``saved``; the state to go on from."""
        learner.model.load_state_dict(saved["model"])
        learner.optimizer.load_state_dict(saved["optimizer"])
        if learner.scheduler is not None and saved["scheduler"] is not None:
            learner.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})


def planned_rows(cfg: RunConfig, prepared: Prepared) -> int:
    """The training rows a run plans to take: epochs x its training samples (train, + valid under the paper protocol)."""
    samples = len(prepared.splits["train"]) + (len(prepared.splits["valid"]) if cfg.protocol == "paper" else 0)
    return cfg.epochs * samples


def decided(cfg: RunConfig, device: torch.device, world: int, prepared: Prepared) -> RunConfig:
    """``cfg`` with what its defaults leave to the device decided: ``--compile auto`` (on a CPU
    runtime.cpu_compile_mode, by the run's length; elsewhere graph_step.resolve) and an evaluation batch of
    0 (runtime.eval_batch_size); a record then says what ran."""
    if cfg.compile == "auto" and device.type == "cpu":
        cfg = cfg.replace(compile=cpu_compile_mode(cfg, world, planned_rows(cfg, prepared)))
    else:
        cfg = graph_step.resolve(cfg, device, world)
    return cfg.replace(eval_batch_size=eval_batch_size(cfg.eval_batch_size, device))


class Trainer:
    """One model trained under ``cfg`` on ``runtime``; ``fit`` is the loop."""

    def __init__(self, cfg: RunConfig, prepared: Prepared, runtime: Runtime, progress: Progress | None = None,
                 stop: Callable[[], bool] | None = None, checkpoint_dir: Path | None = None) -> None:
        self.device = resolve_device(cfg.device)
        cfg = decided(cfg, self.device, runtime.world, prepared)
        self.cfg, self.runtime, self.progress, self.stop = cfg, runtime, progress, stop
        self.checkpoint_dir = checkpoint_dir
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)  # batch order: one permutation per epoch
        self.data = make_splits(cfg, prepared, self.device)
        self.learner = make_learner(cfg, prepared, self.data, self.device, runtime)
        # a pooler's auxiliary loss that needs sampled negatives: drawn once, seeded (dinbench.poolers.base)
        self.negatives = self.learner.model.needs_negatives
        self.padded = self.learner.model.needs_padded  # else batches skip the [B, L] history columns
        if self.negatives:
            self.data.store.draw_negatives(prepared, cfg.seed)
        # from here on each step reuses the memory the step before it freed (the data above was built as before)
        allocator.keep_freed_memory()
        # --compile (on+)cuda-graphs: full batches replay one captured step (dinbench.graph_step)
        self.graph = (graph_step.GraphStep(self.static_step, cfg.batch_size, self.device)
                      if cfg.compile in CAPTURED else None)
        self.compiling = cfg.compile in COMPILED  # until the first step, which compiles: progress says so

    def fit(self, resume: dict[str, Any] | None = None) -> Fitted:
        """Train from the start, or from the checkpoint ``resume``; the model at the selected epoch."""
        state = TrainState() if resume is None else TrainState.from_checkpoint(resume, self.learner)
        while state.epoch <= self.cfg.epochs:
            entry = self.train_epoch(state)
            out_of_patience = self.select(state, entry)
            state.next_epoch()
            if out_of_patience:
                break
        return self.selected(state)

    def batches(self, state: TrainState) -> list[np.ndarray]:
        """This epoch's batches of train rows, from the generator state saved at the epoch's start."""
        if state.epoch_rng is None:  # a fresh epoch (not one resumed mid-way)
            state.epoch_rng = copy.deepcopy(self.rng.bit_generator.state)
        self.rng.bit_generator.state = state.epoch_rng
        if self.cfg.bucket:
            return bucketed_batch_indices(self.data.train.hist_len, self.cfg.batch_size, self.rng)
        return batch_indices(len(self.data.train), self.cfg.batch_size, self.rng)

    def train_epoch(self, state: TrainState) -> dict[str, Any]:
        """Train the rest of ``state.epoch``; its history entry. Checkpoints and raises when stopped."""
        cfg, train = self.cfg, self.data.train
        self.learner.net.train()
        t0 = time.perf_counter()
        batches = self.batches(state)
        order = self.data.store.rows(joined(batches))  # the epoch's rows on the device: one upload
        ends = np.cumsum([len(b) for b in batches])  # batch i is order[ends[i] - len(batches[i]) : ends[i]]
        loss = EpochLoss(state.epoch_loss, self.device)
        aux = EpochLoss(state.epoch_aux_loss, self.device) if self.learner.model.has_auxiliary_loss else None
        stage = progress_stage(state.epoch, cfg.epochs, state.history)
        for i in range(state.batch, len(batches)):
            if self.stop is not None and self.stop():
                state.batch = i
                state.epoch_loss = loss.check(state.epoch)
                state.epoch_aux_loss = aux.check(state.epoch) if aux is not None else 0.0
                state.epoch_seconds += time.perf_counter() - t0
                self.interrupt(state)
            if self.compiling and self.progress is not None:  # the process's first step compiles (seconds)
                self.progress(f"{stage}, compiling the step (torch.compile)", i, len(batches))
            try:
                batch_loss, batch_aux = self.step(order[ends[i] - len(batches[i]) : ends[i]])
            except Exception as exc:
                if self.compiling and _from_torch_compile(exc):
                    raise CompileFailed.of(exc) from exc
                raise
            self.compiling = False
            loss.add(batch_loss, len(batches[i]), i + 1)
            if aux is not None:
                aux.add(batch_aux, len(batches[i]), i + 1)
            if (i + 1) % CHECK_EVERY == 0:
                loss.check(state.epoch)
                if aux is not None:
                    aux.check(state.epoch)
            if self.progress is not None and (i % 20 == 0 or i == len(batches) - 1):
                self.progress(stage, i + 1, len(batches))
        state.epoch_loss = loss.check(state.epoch)
        seconds = state.epoch_seconds + time.perf_counter() - t0
        state.train_seconds += seconds
        state.train_rows += len(train)
        entry = {"epoch": state.epoch, "train_loss": state.epoch_loss / len(train), "train_seconds": seconds}
        if aux is not None:  # only models with an auxiliary loss: other records keep their keys
            state.epoch_aux_loss = aux.check(state.epoch)
            entry["train_aux_loss"] = state.epoch_aux_loss / len(train)
        state.history.append(entry)
        return entry

    def step(self, rows: Rows) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step on the global batch ``rows``; returns its mean loss and auxiliary term (0-d
        tensors on the device, the latter None without one; not read back here: the loop's EpochLoss
        does that every CHECK_EVERY steps)."""
        if self.graph is not None and len(rows) == self.cfg.batch_size:
            positions = int(self.data.train.hist_len[rows.host].sum())  # the batch's real positions (host)
            return self.graph(rows.device, graph_step.capacity(positions, len(rows), self.cfg.max_len))
        idx, n_real = self.runtime.shard(rows)  # this process's slice of the global batch
        # B = len(idx) rows, histories packed [N] (and [B, L] for a model that reads them), on the device
        batch = self.data.store.batch(self.data.train, idx, negatives=self.negatives, padded=self.padded)
        return self.update(batch, n_real, len(rows))

    def static_step(self, idx: torch.Tensor, capacity: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The step of a full batch of samples ``idx`` ([B] on the device) listing ``capacity`` history
        positions (>= its real ones), at fixed shapes and without a host read (what dinbench.graph_step
        captures); its mean loss and auxiliary term."""
        batch = self.data.store.batch_static(self.data.train, idx, self.cfg.max_len, capacity,  # N = capacity
                                             negatives=self.negatives)
        return self.update(batch, len(idx), len(idx))

    def update(self, batch: Batch, n_real: int, n_global: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward, backward and optimizer step on ``batch`` (this process's ``n_real`` rows of a global
        batch of ``n_global``); its mean loss and the model's auxiliary term (Pooler.auxiliary_loss: added
        to the objective; None for models without one), 0-d tensors on the device. Under --distributed the
        auxiliary term is this process's own (each process's mean, gradients averaged by DDP)."""
        cfg, learner = self.cfg, self.learner
        with autocast(cfg.precision, self.device):
            logits, _ = learner.net(batch)  # [B]
        logits = logits.float()
        objective, loss = self.runtime.objective(logits, batch.label, n_real, n_global)  # [], []
        if learner.regularizer is not None:
            emb = learner.model.embeddings
            objective = loss + learner.regularizer(
                emb.item, emb.category,
                torch.cat([batch.item, batch.packed_item]),  # [B + N]: the ids the batch embeds
                torch.cat([batch.category, batch.packed_category]),  # [B + N]
            )
        aux = learner.model.auxiliary_loss()  # [] or None
        if aux is not None:
            aux = aux.float()
            objective = objective + aux
        learner.optimizer.zero_grad(set_to_none=self.graph is None)  # a graph keeps the gradients' addresses
        objective.backward()
        if cfg.grad_clip > 0:
            optim.clip_grad_norm(learner.model.parameters(), cfg.grad_clip)
        learner.optimizer.step()
        if learner.scheduler is not None:
            learner.scheduler.step()
        return loss, aux

    def predict_valid(self) -> tuple[np.ndarray, np.ndarray]:
        """(probs [N], attention_sum [N]) over the valid split; every process gets all of them."""
        return self.runtime.predict(self.learner.model, self.data.store, self.data.valid, self.cfg.eval_batch_size,
                                    self.device, attention=True, precision=self.cfg.precision)

    def select(self, state: TrainState, entry: dict[str, Any]) -> bool:
        """Score the epoch just trained on valid and keep it if it is the best; True when patience ran out."""
        if self.data.valid is None:  # paper protocol: the last epoch is the selected one
            state.best_epoch = state.epoch
            return False
        valid_probs, valid_attn = self.predict_valid()
        entry["valid"] = evaluate(self.data.valid.user, self.data.valid.label, valid_probs)
        gauc_now = entry["valid"]["gauc"]
        if gauc_now > state.best_gauc:
            # tensors, so that a checkpoint (loaded with weights_only) can hold them
            state.best_gauc, state.best_epoch, state.stale = gauc_now, state.epoch, 0
            state.best_state = copy.deepcopy(self.learner.model.state_dict())
            state.best_valid = [torch.from_numpy(valid_probs), torch.from_numpy(valid_attn)]
            return False
        state.stale += 1
        return state.stale > self.cfg.patience

    def interrupt(self, state: TrainState) -> None:
        """Save a checkpoint (when there is somewhere to save it) and raise RunInterrupted."""
        saved = state.to_checkpoint(self.learner)
        where = checkpoint.save(self.checkpoint_dir, saved) if self.checkpoint_dir is not None else None
        raise RunInterrupted(
            f"{self.cfg.pooler} seed {self.cfg.seed} interrupted at epoch {state.epoch}, step {state.batch}"
            + (f"; checkpoint saved in {where}" if where is not None else "")
        )

    def selected(self, state: TrainState) -> Fitted:
        """The model with the selected epoch's weights, and its valid predictions."""
        model, data = self.learner.model, self.data
        if state.best_state is not None:
            model.load_state_dict(state.best_state)
        valid_predictions = None
        if data.valid is not None:
            if state.best_valid is not None and state.best_state is not None:
                valid_predictions = tuple(t.numpy() for t in state.best_valid)
            else:  # no epoch was ever selected (NaN valid GAUC): the model is the last epoch's
                valid_predictions = self.predict_valid()
        seconds = state.train_seconds
        return Fitted(
            model=model, store=data.store, test=data.test, history=state.history, best_epoch=state.best_epoch,
            train_rows=len(data.train), train_rows_per_s=state.train_rows / seconds if seconds > 0 else None,
            device=self.device, valid=data.valid, valid_predictions=valid_predictions,
        )


def fit(
    cfg: RunConfig,
    prepared: Prepared,
    progress: Progress | None = None,
    *,
    stop: Callable[[], bool] | None = None,
    checkpoint_dir: Path | None = None,
    resume: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
) -> Fitted:
    """Train one model under ``cfg`` (validated by the caller) and return it at the epoch the protocol chose.

    ``stop`` is read at every batch boundary; when it returns True the training state is saved to
    ``checkpoint_dir`` and RunInterrupted is raised. ``resume`` is such a saved state: training
    continues from it exactly where it stopped. ``runtime``: the process(es) training runs on
    (default: ``LocalRuntime()``; ``dinbench.distributed.DistributedRuntime`` trains this rank's slice
    of every batch under DistributedDataParallel).
    """
    runtime = runtime if runtime is not None else LocalRuntime()
    trainer = Trainer(cfg, prepared, runtime, progress, stop, checkpoint_dir)
    return trainer.fit(resume)


# ----------------------------------------------------------------------------- a run: folder, record, outputs


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


def _open_run(cfg: RunConfig, prepared: Prepared, results_dir: Path, resume_dir: Path | None,
              runtime: Runtime) -> tuple[Path, dict[str, Any] | None, float]:
    """(run folder, checkpoint to resume or None, wall seconds spent before): a new folder claimed in
    ``results_dir``, or the interrupted run ``resume_dir`` (refused if the dataset changed since)."""
    if resume_dir is None:
        return new_run_dir(runtime.results_dir(results_dir), prepared.name, cfg.pooler, cfg.seed), None, 0.0
    _, old = resume_config(resume_dir)
    if old["dataset"]["fingerprint"] != prepared.fingerprint:
        raise DinbenchError(
            f"dataset '{prepared.name}' changed since run {resume_dir.name} started (fingerprint "
            f"{old['dataset']['fingerprint'][:12]} then, {prepared.fingerprint[:12]} now); start a new run"
        )
    return resume_dir, checkpoint.load(resume_dir), float(old.get("wall_seconds", 0.0))


def _fit_marking_the_record(cfg: RunConfig, prepared: Prepared, run_dir: Path, head: dict[str, Any],
                            elapsed: Callable[[], float], progress: Progress | None, stop: Callable[[], bool] | None,
                            resume: dict[str, Any] | None, runtime: Runtime) -> Fitted:
    """``fit``, with the record marked ``failed`` when the loss diverges or the step cannot be compiled, and
    ``interrupted`` on a stop."""

    def failed(reason: str, advice: str) -> DinbenchError:  # the record marked failed; the one line to show
        write_record(run_dir, {**head, "status": "failed", "reason": reason, "wall_seconds": elapsed(), **environment()})
        return DinbenchError(f"{cfg.pooler} seed {cfg.seed}: {advice}. Record marked failed: {run_dir / 'record.json'}")

    try:
        with runtime.signals() as flag:
            return fit(cfg, prepared, progress, stop=lambda: bool(flag) or bool(stop and stop()),
                       checkpoint_dir=run_dir, resume=resume, runtime=runtime)
    except Diverged as exc:
        raise failed(str(exc), f"{exc}; try a lower --lr (now {cfg.lr}) or --grad-clip 5") from None
    except CompileFailed as exc:
        raise failed(f"torch.compile: {exc}", f"torch.compile could not build the training step ({exc}); rerun "
                     "with --compile off to train eagerly, or give inductor a working C++ compiler and Python's "
                     "headers") from None
    except RunInterrupted as exc:
        reason = f"{flag.name if flag else 'stop requested'}: {exc}"
        write_record(run_dir, {**head, "status": "interrupted", "reason": reason, "wall_seconds": elapsed(),
                               "resume": f"dinbench run --resume {run_dir.name}", **environment()})
        exc.run_dir = run_dir
        raise


def _write_outputs(cfg: RunConfig, fitted: Fitted, run_dir: Path, runtime: Runtime) -> tuple[dict, dict[str, str]]:
    """Score test once (metrics and saved predictions from one pass), save predictions and the model;
    returns (test metrics, the prediction files by split)."""
    test_probs, test_attn = runtime.predict(fitted.model, fitted.store, fitted.test, cfg.eval_batch_size,
                                            fitted.device, attention=True, precision=cfg.precision)
    test_metrics = evaluate(fitted.test.user, fitted.test.label, test_probs)
    saved = {"test": PREDICTION_FILES["test"]}
    write_predictions(run_dir / saved["test"], predictions_frame(fitted.test, test_probs, test_attn))
    if fitted.valid is not None and fitted.valid_predictions is not None:
        saved["valid"] = PREDICTION_FILES["valid"]
        write_predictions(run_dir / saved["valid"], predictions_frame(fitted.valid, *fitted.valid_predictions))
    save_model(run_dir / MODEL_FILE, fitted.model)
    return test_metrics, saved


def _completed_record(cfg: RunConfig, head: dict[str, Any], fitted: Fitted, test_metrics: dict, saved: dict[str, str],
                      runtime: Runtime, wall_seconds: float, started: float, resumed: bool,
                      peak_memory: dict[str, Any]) -> dict[str, Any]:
    about = runtime.about()
    paper = cfg.protocol == "paper"
    return {
        **head,
        "status": "completed",
        "selection": "last epoch (paper protocol: no validation split)" if paper else "best valid GAUC",
        "epochs": fitted.history,
        "best_epoch": fitted.best_epoch,
        "test": test_metrics,
        "predictions": saved,
        "artifacts": {"model": MODEL_FILE},
        "train_rows": int(fitted.train_rows),
        "train_rows_per_s": fitted.train_rows_per_s,
        "peak_memory": peak_memory,  # dinbench.memory: host resident set and device allocations, MB
        "parameters": int(sum(p.numel() for p in fitted.model.parameters())),
        "device": str(fitted.device),
        "world_size": runtime.world,
        **({"distributed": about} if about is not None else {}),
        "wall_seconds": wall_seconds,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        **({"resumed": True} if resumed else {}),
        **environment(),
    }


def train_run(
    cfg: RunConfig,
    prepared: Prepared,
    results_dir: Path,
    progress: Progress | None = None,
    *,
    stop: Callable[[], bool] | None = None,
    resume_dir: Path | None = None,
    runtime: Runtime | None = None,
    tuning: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train and evaluate one run under ``cfg`` (validated by the caller); write and return its record.

    The run directory is claimed first and holds a ``running`` record from the start. A run whose
    loss turns NaN or infinite stops at once: its record is written with status ``failed`` and the
    reason (``report`` never shows it as a result), and DinbenchError says so. SIGINT, SIGTERM or
    ``stop()`` returning True saves a checkpoint, marks the record ``interrupted`` and raises
    RunInterrupted; ``resume_dir`` (an interrupted run's directory) continues such a run.
    ``runtime``: default ``LocalRuntime()``; a ``DistributedRuntime`` runs one run across torchrun's
    processes (dinbench.distributed): only rank 0 writes into ``results_dir`` and signals are left to
    torchrun (no checkpoint). ``tuning``: the study and trial the settings came from (``dinbench run
    --tuned``, see dinbench.tuning), kept in the record as ``tuning`` (a resumed run keeps its own).
    """
    runtime = runtime if runtime is not None else LocalRuntime()
    check_compile(cfg.compile, resolve_device(cfg.device))  # before a run folder is claimed
    cfg = decided(cfg, resolve_device(cfg.device), runtime.world, prepared)  # the record says what ran
    started = time.time()
    watch = PeakMemory(resolve_device(cfg.device))
    run_dir, resume, previous_seconds = _open_run(cfg, prepared, results_dir, resume_dir, runtime)
    head = _record_head(cfg, prepared, run_dir, "running")
    if tuning is None and resume_dir is not None:
        tuning = resume_config(resume_dir)[1].get("tuning")
    if tuning is not None:
        head["tuning"] = tuning
    write_record(run_dir, {**head, **environment()})

    def elapsed() -> float:
        return previous_seconds + time.time() - started

    fitted = _fit_marking_the_record(cfg, prepared, run_dir, head, elapsed, progress, stop, resume, runtime)
    test_metrics, saved = _write_outputs(cfg, fitted, run_dir, runtime)
    record = _completed_record(cfg, head, fitted, test_metrics, saved, runtime, elapsed(), started, resume is not None,
                               watch.read())
    write_record(run_dir, record)
    checkpoint.remove(run_dir)
    return run_dir, record
