"""``--compile cuda-graphs``: the whole training step (batch gather, forward, backward, optimizer)
captured once as a CUDA graph and replayed for every full batch. ``--compile on+cuda-graphs``: the
same, with the forward and backward compiled by torch.compile first (inductor's fused kernels: fewer
launches inside the graph; the warm-up steps compile, capture only records; sizes are symbolic, so
one compile serves every captured size).

Why: eager din launches about 270 small kernels per step, and at batch 1,024 an H200 waits for the
host most of the time (busy 20 %, benchmarks/gpu.py). A replayed graph is one launch per step.

What capture needs, and how the step provides it:

- **Fixed shapes.** Every captured batch has ``batch_size`` rows, ``max_len + 1`` history columns and
  a fixed number N of listed history positions (``BehaviourStore.batch_static``): its real ones, then
  fillers at padding, weighted 0, so results equal the packed eager batch up to float summation
  order. N is the batch's real positions (counted on the host) rounded up by ``capacity`` to one of a
  few sizes; each size gets its own graph. An epoch's last, smaller batch runs eagerly.
- **No host syncs.** Dense table gradients and the optimizer's masked row update (or, with
  ``SPARSE_TABLES``, large tables' sparse gradients of a fixed size summed by row with fixed shapes),
  and the step count on the device (``optim.make_optimizer(capturable=True)``).
- **Fixed addresses.** The batch's sample indices are copied into one buffer before each replay;
  gradients are zeroed in place and never set to None (``Trainer.update``).
- **Warm-up.** The first ``WARMUP`` full batches (then one per new size) train eagerly on a side
  stream (real steps) so that the optimizer's state and the libraries' workspaces exist before
  capture; the step is then captured on the next batch of that size and replayed for it (capture
  itself runs nothing).

What it cannot express is refused in one line before a run starts (``check``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from dinbench.errors import DinbenchError

WARMUP = 3  # eager full batches before the first capture (then one before each new size's)

# Large tables (>= optimizers.SPARSE_MIN_ROWS rows) keep their sparse gradients inside the graph: a
# static batch looks up a fixed number of ids, so the sparse gradient has a fixed size, its padding
# entries are zeros (embeddings._Table), and the optimizer sums its rows with fixed shapes
# (optim._summed_by_row) and updates those rows only: a step's cost flat in the catalogue instead of
# the masked update's pass over the whole table and its moments. Proven free of data-dependent shapes
# on the meta device (tests/test_optimizers.py) and captured on an H200 (2026-11-30, eleventh session:
# benchmarks/cuda_sync_check.py --sparse --compile cuda-graphs, no host sync; the GPU test's captured run within
# tolerance of the eager one). benchmarks/catalogue.py there, 4 M items against 10k: average 0.86x and
# din 0.89x with it, 0.10x and 0.13x with the masked update (False; --graph-masked measures that).
SPARSE_TABLES = True


def capacity(positions: int, batch_size: int, max_len: int) -> int:
    """The listed positions N of a static batch with ``positions`` real ones: a whole number c of
    positions per row, c = ceil(positions / B) up to 16, then rounded up to a multiple of 4, at most
    ``max_len`` (so at most 16 + (max_len - 16) / 4 sizes, each a graph; <= 25 % of N is filler)."""
    c = max(1, -(-positions // batch_size))
    if c > 16:
        c = -(-c // 4) * 4
    return batch_size * max(min(c, max_len), -(-positions // batch_size))


def resolve(cfg, device: torch.device, world: int):
    """``cfg`` with ``--compile auto`` decided: ``cuda-graphs`` on a CUDA device when the run is one
    the graph can hold (no refusal below would apply) and its pooler's captured runs were measured
    on a GPU (``About.graphs_by_default``: every pooler but none, last, sum and dien, benchmarks/gpu.py
    and benchmarks/compile.py: 2-5x eager on an H200, the same metrics up to float rounding), else
    ``off`` (on a CPU there is nothing to capture; an unmeasured pooler is captured only on request,
    ``--compile cuda-graphs``). Other modes are returned as they are."""
    if cfg.compile != "auto":
        return cfg
    from dinbench import poolers

    if not poolers.REGISTRY[poolers.parse_spec(cfg.pooler)[0]].info.graphs_by_default:
        return cfg.replace(compile="off")
    graphs = cfg.replace(compile="cuda-graphs")
    try:
        check(graphs, device, world)
    except DinbenchError:
        return cfg.replace(compile="off")
    return cfg.replace(compile="off") if poolers.dice_attention(cfg.pooler_options) else graphs


def check(cfg, device: torch.device, world: int) -> None:
    """Refuse, in one line, a run that a captured mode (``--compile cuda-graphs``, ``on+cuda-graphs``)
    cannot train as it would eagerly."""
    from dinbench.config import CAPTURED

    if cfg.compile not in CAPTURED:
        return
    from dinbench.runtime import check_compile

    check_compile(cfg.compile, device)  # a CUDA device (the one place that says so), and torch.compile for on+
    mode = cfg.compile
    refusals = [
        (world > 1, "one process (DistributedDataParallel all-reduces outside the graph)", "train without --distributed"),
        (cfg.l2_minibatch > 0, "no --l2-minibatch (its distinct-row count is a host sync)", "set --l2-minibatch 0"),
        (cfg.lr_decay_steps > 0, "a fixed learning rate (the graph holds it)", "set --lr-decay-steps 0"),
    ]
    for refused, needs, fix in refusals:
        if refused:
            raise DinbenchError(f"--compile {mode} needs {needs}; {fix}, or use --compile on")
    from dinbench import poolers

    name = poolers.parse_spec(cfg.pooler)[0]
    if not poolers.REGISTRY[name].info.cuda_graphs:  # its declaration says a graph cannot hold it
        raise DinbenchError(f"--compile {mode} cannot train pooler '{name}' (its training step is not "
                            "captured as a graph); use --compile on or off")


def check_model(model: torch.nn.Module, mode: str = "cuda-graphs") -> None:
    """Dice in a pooler computes statistics over the history positions, which would include padding."""
    from dinbench.layers.activations import Dice

    if any(isinstance(m, Dice) for p in model.poolers for m in p.modules()):
        raise DinbenchError(f"--compile {mode} cannot train Dice in the attention unit (its statistics would see "
                            "padding); use another attention activation, or --compile on")


class GraphStep:
    """Call with a full batch's sample indices ([B] long on the device) and the static batch's
    ``capacity``; returns what the step returns: the batch's loss and auxiliary term (0-d tensors, or
    None for the latter, that the next call of the same capacity overwrites: read or copy them before then).

    ``step(idx, capacity)`` is the eager step on the static batch of ``idx``; it is warmed up, then
    captured once per capacity with ``idx`` pointing at this object's buffer, then replayed.
    """

    def __init__(self, step: Callable[[torch.Tensor, int], Any], batch_size: int,
                 device: torch.device) -> None:
        self.step = step
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=device)  # [B] the replayed step's input
        self.warm: dict[int, int] = {}  # eager warm-up steps taken, per capacity
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.losses: dict[int, Any] = {}  # per capacity, the captured step's outputs

    def __call__(self, idx: torch.Tensor, capacity: int) -> Any:
        self.idx.copy_(idx)
        graph = self.graphs.get(capacity)
        if graph is None:
            if self.warm.get(capacity, 0) < (1 if self.graphs else WARMUP):
                self.warm[capacity] = self.warm.get(capacity, 0) + 1
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    loss = self.step(self.idx, capacity)
                torch.cuda.current_stream().wait_stream(side)
                return loss
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.losses[capacity] = self.step(self.idx, capacity)
            self.graphs[capacity] = graph
        graph.replay()
        return self.losses[capacity]
