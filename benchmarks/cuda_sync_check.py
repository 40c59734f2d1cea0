"""Check that training steps never wait for the GPU: gather + forward + backward + optimizer step +
the device-side loss sum, under ``torch.cuda.set_sync_debug_mode("error")`` (any host sync raises).

    python benchmarks/cuda_sync_check.py [--device cuda] [--pooler din] [--steps 60] [--compile auto]
                                         [--sparse] [--graph-masked]

``--compile``: the run's mode (default auto: cuda-graphs for the poolers measured on a GPU, eager
for the rest; ``off`` checks the eager step). ``--sparse``: every table takes a sparse gradient, as
tables of 50,000 rows and more do under lazy-adam (this set's tables are small), to check the
eager row-sparse path (the lookup's padding entries, the optimizer's row sums) as well.
With ``--sparse --compile cuda-graphs`` the captured step keeps those sparse gradients
(``dinbench.graph_step.SPARSE_TABLES``), so capturing it is the check (a sync in capture raises);
``--graph-masked`` captures the masked update over whole tables instead.

On a small synthetic set (generated in a temporary folder). The loop's reads every ``CHECK_EVERY``
steps (``EpochLoss.check``) are the intended syncs; this runs the steps in between, and reads once
at the end. With ``--device cpu``
it is a plain smoke test (the debug mode only watches CUDA).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pooler", default="din")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--compile", default="auto")
    ap.add_argument("--sparse", action="store_true", help="sparse gradients for every table (lazy-adam's at >= 50k rows)")
    ap.add_argument("--graph-masked", action="store_true",
                    help="with --compile cuda-graphs: the masked update over whole tables inside the graph "
                         "(dinbench.graph_step.SPARSE_TABLES off) instead of sparse table gradients")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch

    from dinbench import optimizers

    if args.sparse:
        optimizers.SPARSE_MIN_ROWS = 1
    if args.graph_masked:
        from dinbench import graph_step

        graph_step.SPARSE_TABLES = False
    from dinbench.config import RunConfig
    from dinbench.prepared import contract
    from dinbench.runtime import LocalRuntime
    from dinbench.sources.synthetic import SyntheticConfig, generate, source_info
    from dinbench.train import EpochLoss, TrainState, Trainer

    root = Path(tempfile.mkdtemp())
    synth = SyntheticConfig(users=300, mean_length=20.0)
    behaviours, items = generate(synth)
    contract.prepare(behaviours, "synthetic", root, source_info(synth), item_attributes=items)
    prepared = contract.load(root, "synthetic")
    cfg = RunConfig(pooler=args.pooler, device=args.device, batch_size=64, compile=args.compile)
    trainer = Trainer(cfg, prepared, LocalRuntime())
    batches = trainer.batches(TrainState())
    order = trainer.data.store.rows(np.concatenate(batches))  # the once-per-epoch upload (a sync, before)
    ends = np.cumsum([len(b) for b in batches])
    loss = EpochLoss(0.0, trainer.device)
    trainer.learner.net.train()
    cuda = trainer.device.type == "cuda"
    for i in range(min(args.steps, len(batches))):
        if i == 1 and cuda:  # the first step warms up (lazy initialisations may sync once)
            torch.cuda.set_sync_debug_mode("error")
        loss.add(trainer.step(order[ends[i] - len(batches[i]) : ends[i]])[0], len(batches[i]), i + 1)
    if cuda:
        torch.cuda.set_sync_debug_mode("default")
    sparse = [n for n, p in trainer.learner.model.named_parameters() if p.grad is not None and p.grad.is_sparse]
    print(f"{args.pooler} on {trainer.device} (compile {trainer.cfg.compile}, sparse table gradients: "
          f"{', '.join(sparse) or 'none'}): {i + 1} steps without a host sync; epoch loss so far "
          f"{loss.check(1):.4f}")


if __name__ == "__main__":
    main()
