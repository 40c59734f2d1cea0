"""Where and how a run executes: device, CPU threads, precision, scoring, and the process runtime.

This module is the home of

- the device and thread helpers: ``resolve_device``, ``default_threads``, ``set_threads`` and the
  precision context ``autocast``;
- ``predict``: one process scoring samples with a model;
- the ``Runtime`` interface the training loop talks to, so that the loop reads the same on one
  process and on several: ``LocalRuntime`` (one process) here, ``DistributedRuntime`` (torchrun +
  DistributedDataParallel) in ``dinbench.distributed``.

A runtime answers: which module trains (``wrap``), which rows of a global batch this process trains
on (``shard``), the objective and the logged loss of a batch (``objective``), predictions over a
whole split (``predict``), where records go (``results_dir``, ``is_writer``), what the record says
about it (``world``, ``about``) and how signals stop training (``signals``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, ContextManager, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from dinbench import allocator
from dinbench.batches import BehaviourStore, Rows, SampleSet, joined, length_sorted_indices
from dinbench.checkpoint import StopFlag
from dinbench.config import CAPTURED, COMPILED, CPU_COMPILE_MIN_ROWS
from dinbench.errors import DinbenchError

T = TypeVar("T")

# ----------------------------------------------------------------------------- device and threads

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


# ----------------------------------------------------------------------------- compiling the training model


def check_compile(mode: str, device: torch.device) -> None:
    """Refuse, in one line, a ``--compile`` mode this device or this torch cannot run."""
    if mode in ("off", "auto"):  # auto: resolved per run (graph_step.resolve), never refused
        return
    if mode in CAPTURED:  # captured by dinbench.graph_step (and compiled first under on+cuda-graphs)
        if torch.device(device).type != "cuda":
            raise DinbenchError(f"--compile {mode} needs a CUDA device (this run trains on "
                                f"{torch.device(device).type}); use --compile on, or --device cuda")
        if mode not in COMPILED:
            return
    from torch import _dynamo

    if not _dynamo.is_dynamo_supported():
        raise DinbenchError(f"--compile {mode}: torch.compile is not supported on this Python/torch; use --compile off")


def cpu_compile_mode(cfg: Any, world: int, planned_rows: int) -> str:
    """``--compile auto`` on a CPU: ``on`` (torch.compile) for a long run of a pooler measured to pay there
    (``About.compiles_on_cpu``: average; din measured 1.00x end to end, so not din), else ``off``. Long:
    ``planned_rows`` (epochs x training samples) >= CPU_COMPILE_MIN_ROWS. Never for what was not measured
    or cannot compile: several processes (--distributed), bf16, Dice in the attention unit (as on a GPU),
    no C++ compiler for inductor (``$CXX``, else g++; clang++ on macOS) or no Python headers to build
    against, Windows, or a torch without dynamo. A compiled run has the eager run's metrics up to float
    rounding (tests/test_compile.py), and the record says it ran compiled."""
    import shutil
    import sys

    from dinbench import poolers

    if planned_rows < CPU_COMPILE_MIN_ROWS or world > 1 or cfg.precision != "fp32" or sys.platform == "win32":
        return "off"
    if not poolers.REGISTRY[poolers.parse_spec(cfg.pooler)[0]].info.compiles_on_cpu:
        return "off"
    if poolers.dice_attention(cfg.pooler_options):
        return "off"
    if not shutil.which(os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")):
        return "off"
    if not _python_headers():  # inductor's CPU kernels are built against Python.h
        return "off"
    from torch import _dynamo

    return "on" if _dynamo.is_dynamo_supported() else "off"


def _python_headers() -> bool:
    """Whether this Python's C headers are installed (Python.h; a framework build on macOS keeps them in Headers/)."""
    import sysconfig
    from pathlib import Path

    include = Path(sysconfig.get_path("include"))
    framework = Path(sysconfig.get_path("stdlib")).parent.parent / "Headers"
    return (include / "Python.h").exists() or (framework / "Python.h").exists()


def compile_net(net: nn.Module, mode: str) -> nn.Module:
    """What trains under ``--compile mode``: ``torch.compile(net)`` under ``on`` and ``on+cuda-graphs``
    (whose compiled step dinbench.graph_step then captures), else ``net`` itself (``cuda-graphs``
    captures the eager step whole).

    Only the training forward/backward is compiled; the plain model's weights are the same tensors, so
    selecting, saving and scoring the model (``Learner.model``) see no ``_orig_mod.`` wrapper.
    ``dynamic=True``: a batch's real history positions (N) differ from batch to batch, so sizes are
    symbolic from the first compile (compiling static first and then again dynamic took twice as long:
    216 s against 107 s for a tiny din run on a loaded 2-core CPU), and under ``on+cuda-graphs`` one
    compile serves every captured size.
    """
    if mode not in COMPILED:
        return net
    # each run compiles afresh (the on-disk cache still serves a graph seen before): runs of other poolers
    # in one process would otherwise pile recompiles onto CTRModel.forward until dynamo's limit (8)
    # silently sends the rest back to eager
    from torch import _dynamo

    _dynamo.reset()
    return torch.compile(net, dynamic=True)


# ----------------------------------------------------------------------------- scoring

EVAL_BATCH_CPU = 4096  # the fastest of 1,024-65,536 on a CPU (config.py)
EVAL_BATCH_GPU = 65536  # benchmarks/gpu.py's size: 10.5 M rows/s on an H200 (docs/performance.md)


def eval_batch_size(size: int, device) -> int:
    """The evaluation batch for a config's ``eval_batch_size`` ``size`` on ``device``: ``size`` itself, or for 0
    the device's default (EVAL_BATCH_CPU, or EVAL_BATCH_GPU on any accelerator: scoring is one kernel
    sequence per batch, so a GPU wants few large ones; ``predict`` halves a batch that does not fit)."""
    return size or (EVAL_BATCH_CPU if torch.device(device).type == "cpu" else EVAL_BATCH_GPU)


@torch.inference_mode()
def predict(
    model: nn.Module, store: BehaviourStore, samples: SampleSet, batch_size: int, device, *, attention: bool = False,
    precision: str = "fp32",
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Click probabilities for every sample, in order (batches gathered by ``store`` on its device).

    With ``attention=True`` returns ``(probs, attention_sum)`` from the same single pass:
    ``attention_sum`` is each sample's sum of the pooler's weights over the real (unpadded) history
    positions, NaN for every sample when the pooler returns no weights.

    Rows are scored in batches of ``batch_size``, shortest histories first (little padding); the
    row order goes to the device once and the scores stay there until the one copy back at the end.
    Batches carry the padded [B, L] history only for a model that reads it (``needs_padded``). A
    batch that runs out of device memory is scored again in two halves (a large evaluation batch on
    a small GPU, or the long histories of the last batches).
    """
    model.eval()
    padded = getattr(model, "needs_padded", True)
    device = torch.device(device)
    n = len(samples)
    batches = length_sorted_indices(samples.hist_len, eval_batch_size(batch_size, device))  # 0: the device's
    order = store.rows(joined(batches))  # [N], one upload
    # float32 holds a sigmoid of float32 or bfloat16 exactly; the sums of weights are taken in float64
    probs = torch.empty(n, dtype=torch.float32, device=store.device)  # [N]
    attn = torch.full((n,), torch.nan, dtype=torch.float64, device=store.device) if attention else None  # [N]
    spans = np.cumsum([0] + [len(idx) for idx in batches])
    pending = [(int(a), int(b)) for a, b in zip(spans[:-1], spans[1:])][::-1]  # (start, end) of order, a stack
    while pending:
        start, end = pending.pop()
        rows = order[start:end]
        try:
            batch = store.batch(samples, rows, padded=padded)
            with autocast(precision, device):
                logits, weights = model(batch)  # [b], [b, L] or None
        except torch.OutOfMemoryError:
            if end - start == 1:
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            middle = (start + end) // 2
            pending += [(middle, end), (start, middle)]  # the first half next
            continue
        probs.index_copy_(0, rows.device, torch.sigmoid(logits).float())  # [b] into [N]
        if attn is not None and weights is not None:
            attn.index_copy_(0, rows.device, weights.double().sum(-1))  # poolers give padding weight 0
        del batch, logits, weights
        # batches grow (shortest histories first), so a heap that keeps freed memory for training steps
        # (dinbench.allocator) would hold a block of every size: give it back after each batch
        allocator.release_free_memory()
    out = probs.cpu().numpy().astype(np.float64)
    return (out, attn.cpu().numpy()) if attention else out


# ----------------------------------------------------------------------------- runtimes


class Runtime(Protocol):
    """What the training loop needs from the process(es) it runs on; see the module docstring."""

    world: int

    @property
    def is_writer(self) -> bool: ...

    def wrap(self, model: nn.Module) -> nn.Module: ...

    def shard(self, idx: Rows) -> tuple[Rows, int]: ...

    def objective(self, logits: torch.Tensor, label: torch.Tensor, n_real: int,
                  n_global: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def predict(self, model: nn.Module, store: BehaviourStore, samples: SampleSet, batch_size: int, device, *,
                attention: bool = False, precision: str = "fp32") -> Any: ...

    def results_dir(self, out): ...

    def about(self) -> dict[str, Any] | None: ...

    def describe(self) -> str: ...

    def signals(self) -> ContextManager[StopFlag]: ...

    def rank0_first(self, fn: Callable[[], T]) -> T: ...

    def agree(self, value: Any, what: str) -> None: ...

    def close(self) -> None: ...


class LocalRuntime:
    """One process: the model trains as it is, every row of a batch is this process's, and SIGINT or
    SIGTERM stop training at the next batch boundary with a checkpoint."""

    world = 1
    is_writer = True

    def __init__(self) -> None:
        self._loss = nn.BCEWithLogitsLoss()

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def shard(self, idx: Rows) -> tuple[Rows, int]:
        return idx, len(idx)

    def objective(self, logits: torch.Tensor, label: torch.Tensor, n_real: int, n_global: int):
        """(objective to backpropagate, batch loss to log): one tensor, the batch's mean loss."""
        loss = self._loss(logits, label)  # [] from [b], [b]
        return loss, loss

    def predict(self, model, store, samples, batch_size: int, device, *, attention: bool = False,
                precision: str = "fp32"):
        return predict(model, store, samples, batch_size, device, attention=attention, precision=precision)

    def results_dir(self, out):
        return out

    def about(self) -> dict[str, Any] | None:
        return None  # records of one process have no "distributed" entry

    def describe(self) -> str:
        return ""  # one process is the default: the plan line says nothing more

    def signals(self) -> ContextManager[StopFlag]:
        """SIGINT and SIGTERM raise the flag the loop reads at every batch boundary."""
        return StopFlag()

    def rank0_first(self, fn: Callable[[], T]) -> T:
        return fn()

    def agree(self, value: Any, what: str) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def unarmed_signals():
    """A StopFlag no signal raises (under torchrun, which stops every rank itself)."""
    yield StopFlag()
