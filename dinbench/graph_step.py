"""``--compile cuda-graphs``: the whole training step (batch gather, forward, backward, optimizer)
captured once as a CUDA graph and replayed for every full batch.

Why: eager din launches about 270 small kernels per step, and at batch 1,024 an H200 waits for the
host most of the time (busy 20 %, benchmarks/gpu.py). A replayed graph is one launch per step.

What capture needs, and how the step provides it:

- **Fixed shapes.** Every captured batch has ``batch_size`` rows and ``max_len`` history positions,
  all of them listed as positions (``BehaviourStore.batch_static``: N = B * L, padding with weight 0),
  so results equal the packed eager batch up to float summation order. An epoch's last, smaller
  batch runs eagerly.
- **No host syncs.** Dense table gradients (a sparse one's size varies), the optimizer's masked row
  update and its step count on the device (``optimizers.make_optimizer(capturable=True)``).
- **Fixed addresses.** The batch's sample indices are copied into one buffer before each replay;
  gradients are zeroed in place and never set to None (``Trainer.update``).
- **Warm-up.** The first ``WARMUP`` full batches train eagerly on a side stream (real steps) so that
  the optimizer's state and the libraries' workspaces exist before capture; the step is then
  captured on the next batch and replayed for it (capture itself runs nothing).

What it cannot express is refused in one line before a run starts (``check``).
"""

from __future__ import annotations

from typing import Callable

import torch

from dinbench.errors import DinbenchError

WARMUP = 3  # eager full batches before the capture


def check(cfg, device: torch.device, world: int) -> None:
    """Refuse, in one line, a run that ``--compile cuda-graphs`` cannot train as it would eagerly."""
    if cfg.compile != "cuda-graphs":
        return
    if torch.device(device).type != "cuda":
        raise DinbenchError(f"--compile cuda-graphs needs a CUDA device (this run trains on {torch.device(device).type}); "
                            "use --compile on, or --device cuda")
    refusals = [
        (world > 1, "one process (DistributedDataParallel all-reduces outside the graph)", "train without --distributed"),
        (cfg.l2_minibatch > 0, "no --l2-minibatch (its distinct-row count is a host sync)", "set --l2-minibatch 0"),
        (cfg.lr_decay_steps > 0, "a fixed learning rate (the graph holds it)", "set --lr-decay-steps 0"),
    ]
    for refused, needs, fix in refusals:
        if refused:
            raise DinbenchError(f"--compile cuda-graphs needs {needs}; {fix}, or use --compile on")


def check_model(model: torch.nn.Module) -> None:
    """Dice in a pooler computes statistics over the history positions, which would include padding."""
    from dinbench.layers.activations import Dice

    if any(isinstance(m, Dice) for p in model.poolers for m in p.modules()):
        raise DinbenchError("--compile cuda-graphs cannot train Dice in the attention unit (its statistics would see "
                            "padding); use another attention activation, or --compile on")


class GraphStep:
    """Call with a full batch's sample indices ([B] long on the device); returns the batch's loss
    (a 0-d tensor that the next call overwrites: read or copy it before then).

    ``step(idx)`` is the eager step on the static batch of ``idx``; it is run ``WARMUP`` times, then
    captured once with ``idx`` pointing at this object's buffer, then replayed.
    """

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], batch_size: int, device: torch.device) -> None:
        self.step = step
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=device)  # [B] the replayed step's input
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        self.idx.copy_(idx)
        if self.graph is None:
            if self.calls < WARMUP:
                self.calls += 1
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    loss = self.step(self.idx)
                torch.cuda.current_stream().wait_stream(side)
                return loss
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self.step(self.idx)
        self.graph.replay()
        return self.loss
