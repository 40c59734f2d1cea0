"""One run on several processes (GPUs, or CPU processes): PyTorch DistributedDataParallel under torchrun.

    torchrun --nproc-per-node 2 -m dinbench.cli run --distributed --pooler din --device cuda   # 2 GPUs
    torchrun --nproc-per-node 2 -m dinbench.cli run --distributed --threads 1                  # 2 CPU processes

What each rank does, so that training matches one process on the same global batch:

- **Batches.** Every rank draws the same seeded permutation (same seed, same numpy generator), so
  all ranks agree on every global batch of ``batch_size`` rows; rank r trains on the r-th contiguous
  slice of it (``numpy.array_split``, sizes differ by at most one row).
- **Gradient.** Rank r's objective is ``sum of its rows' losses x world / global batch size``. DDP
  averages gradients over the ranks, so every rank steps with the gradient of the global batch's mean
  loss: the single-process gradient, up to floating-point summation order. (A rank whose slice is
  empty, when a last batch has fewer rows than ranks, trains on one row with weight 0.)
  Gradient clipping, Adam and the lr schedule then see identical gradients on every rank.
- **Logged loss and divergence.** The global batch loss is all-reduced every step, so the epoch loss
  in the record is the global one and a NaN stops every rank at the same step.
- **Evaluation** (once per epoch on valid, once on test): rank r scores rows r, r+W, r+2W, ... and
  the predictions are all-gathered, so every rank holds all of them and computes the same GAUC:
  early stopping is decided identically on every rank without another message.
- **Records.** Rank 0 writes the one record (``world_size`` and ``distributed`` in it) and prints;
  the other ranks write theirs into a scratch folder that is deleted at the end.

Not supported with ``--distributed``: ``--l2-minibatch`` (its penalty depends on the whole batch's
features) and ``--resume`` / checkpoints on Ctrl-C (torchrun stops all ranks instead). Batch
statistics of ``--mlp-activation dice`` are per rank's slice, as BatchNorm's are under DDP.
Backends: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.nn import functional as F

from dinbench.batches import Rows
from dinbench.config import RunConfig
from dinbench.errors import DinbenchError
from dinbench.runtime import predict, resolve_device, unarmed_signals

T = TypeVar("T")
LAUNCH = "torchrun --nproc-per-node N -m dinbench.cli run --distributed ..."


def check_config(cfg: RunConfig) -> None:
    """Refuse, in one line, the settings that cannot be split across ranks exactly."""
    if cfg.l2_minibatch > 0:
        raise DinbenchError("--l2-minibatch does not combine with --distributed (its penalty is taken over the "
                            "whole batch's features); drop one of them")


@dataclass
class DistributedRuntime:
    """This process's place in the group, and the ``dinbench.runtime.Runtime`` of a rank; made by ``init``."""

    rank: int
    world: int
    local_rank: int
    backend: str
    scratch: Path | None = None  # where a non-zero rank's copy of each run folder goes (deleted on close)

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"each run on {self.world} processes (DistributedDataParallel, {self.backend})"

    def about(self) -> dict[str, Any]:
        return {"world_size": self.world, "backend": self.backend}

    def signals(self):
        """Signals are torchrun's (it stops every rank): a flag that nothing raises, no checkpoint."""
        return unarmed_signals()

    def results_dir(self, out: Path) -> Path:
        """Rank 0 writes into ``out``; the other ranks into their scratch folder."""
        if self.is_writer:
            return out
        if self.scratch is None:
            self.scratch = Path(tempfile.mkdtemp(prefix=f"dinbench-rank{self.rank}-"))
        return self.scratch

    def rank0_first(self, fn: Callable[[], T]) -> T:
        """Rank 0 calls ``fn`` first (e.g. preparing a dataset), then the others; an error on
        rank 0 is raised on every rank instead of leaving them waiting."""
        message = [None]
        if self.is_writer:
            try:
                result = fn()
            except DinbenchError as exc:
                message[0] = str(exc)
                tdist.broadcast_object_list(message, src=0)
                raise
            tdist.broadcast_object_list(message, src=0)
            return result
        tdist.broadcast_object_list(message, src=0)
        if message[0] is not None:
            raise DinbenchError(message[0])
        return fn()

    def agree(self, value: Any, what: str) -> None:
        """Refuse, on every rank, to go on unless every rank has the same ``value``."""
        values: list[Any] = [None] * self.world
        tdist.all_gather_object(values, value)
        if any(v != values[0] for v in values):
            differ = ", ".join(f"rank {r}: {str(v)[:12]}" for r, v in enumerate(values))
            raise DinbenchError(f"the ranks disagree on the {what} ({differ}); prepare the same data on every node")

    def wrap(self, model: nn.Module) -> nn.Module:
        """The DDP wrapper that trains ``model`` (whose parameters and state_dict stay the plain ones)."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if self.backend == "nccl" else None
        # every pooler uses all its parameters in every step (tests/test_distributed.py checks each one),
        # so DDP need not search the graph for unused ones
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False)

    def shard(self, idx: Rows) -> tuple[Rows, int]:
        """This rank's contiguous slice of the global batch ``idx`` (``Rows`` or a numpy array), and how
        many of its rows count. The slices are ``numpy.array_split``'s: the first ``len % world`` ranks
        take one row more. A slice is a view, so the rows already on the device are not copied again."""
        size, extra = divmod(len(idx), self.world)
        start = self.rank * size + min(self.rank, extra)
        part = idx[start : start + size + (self.rank < extra)]
        if len(part) == 0:  # fewer rows than ranks: one row, weight 0, so every rank joins the all-reduce
            return idx[:1], 0
        return part, len(part)

    def objective(self, logits: torch.Tensor, label: torch.Tensor, n_real: int, n_global: int):
        """(objective to backpropagate, global mean batch loss): see the module docstring."""
        losses = F.binary_cross_entropy_with_logits(logits, label, reduction="none")  # [b]
        local = losses[:n_real].sum()
        total = local.detach().clone()
        tdist.all_reduce(total)  # the global batch's summed loss, identical on every rank
        return local * (self.world / n_global), total / n_global

    def predict(self, model, store, samples, batch_size: int, device, *, attention: bool = False,
                precision: str = "fp32"):
        """``runtime.predict`` over all of ``samples``, each rank scoring every W-th row, all-gathered."""
        rows = np.arange(len(samples))[self.rank :: self.world]
        part = samples.subset(rows)
        mine = predict(model, store, part, batch_size, device, attention=attention, precision=precision)
        gathered: list[Any] = [None] * self.world
        tdist.all_gather_object(gathered, (rows, mine))
        probs = np.empty(len(samples), dtype=np.float64)
        attn = np.empty(len(samples), dtype=np.float64) if attention else None
        for their_rows, theirs in gathered:
            if attention:
                probs[their_rows], attn[their_rows] = theirs
            else:
                probs[their_rows] = theirs
        return (probs, attn) if attention else probs

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def init(device: str) -> DistributedRuntime:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise DinbenchError(f"--distributed must be started by torchrun ({', '.join(missing)} not set): {LAUNCH}")
    rank, world, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    kind = resolve_device(device).type
    if kind == "mps":
        raise DinbenchError("--distributed runs on CUDA (nccl) or CPU (gloo), not MPS; use --device cpu or cuda")
    if kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DinbenchError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                                "start at most one process per GPU (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    tdist.init_process_group(backend)
    return DistributedRuntime(rank=rank, world=world, local_rank=local_rank, backend=backend)
