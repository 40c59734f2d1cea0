"""Where a training epoch's time goes: torch.profiler over one epoch of dinbench's own loop.

    python benchmarks/profile_train.py [--device auto] [--pooler din] [--batch-size 8192]
                                       [--dataset synthetic] [--data-dir DIR] [--rows 20] [--steps 0]

One untimed warm-up epoch (``dinbench.train.Trainer.train_epoch``), then one profiled epoch (with
``--steps N``: N warm-up steps of ``Trainer.step``, then N profiled ones, full batches only); prints the
top ``--rows`` operators by device time (CUDA) or by self CPU time, and the profiled part's wall time
and rows/s.
A diagnosis tool for benchmarks/gpu.py's figures, not a target.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pooler", default="din")
    ap.add_argument("--batch-size", type=int, default=8192)
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--data-dir", type=Path, default=None, help="prepared datasets (synthetic: generated in a temp folder)")
    ap.add_argument("--optimizer", default=None)
    ap.add_argument("--compile", default=None)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--steps", type=int, default=0,
                    help="warm up and profile this many training steps each instead of an epoch each (0: epochs): "
                         "on a CPU a whole epoch's profile takes minutes to tabulate")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import tempfile

    import torch
    from torch.profiler import ProfilerActivity, profile

    from dinbench.config import RunConfig
    from dinbench.prepared.contract import load
    from dinbench.runtime import LocalRuntime
    from dinbench.sources.local import load_or_prepare
    from dinbench.train import Trainer, TrainState

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    data_dir = args.data_dir or Path(tempfile.mkdtemp())
    prepared = load_or_prepare(data_dir, "synthetic") if args.dataset == "synthetic" else load(data_dir, args.dataset)
    extra = {k: v for k, v in dict(optimizer=args.optimizer, compile=args.compile).items() if v}
    cfg = RunConfig(dataset=prepared.name, pooler=args.pooler, epochs=3, batch_size=args.batch_size, device=device, **extra)
    trainer = Trainer(cfg, prepared, LocalRuntime())
    state = TrainState()
    batches = trainer.batches(state)  # --steps: the first 2 x steps full batches of the first epoch
    batches = [trainer.data.store.rows(b) for b in batches if len(b) == args.batch_size][:2 * args.steps]
    if args.steps and len(batches) < 2 * args.steps:
        sys.exit(f"--steps {args.steps}: the epoch has only {len(batches)} full batches (2 x steps needed)")

    def train(part: int) -> int:  # part 0 warms up, part 1 is profiled; the rows trained
        if not args.steps:
            trainer.train_epoch(state)
            state.next_epoch()
            return len(trainer.data.train)
        for rows in batches[part * args.steps:(part + 1) * args.steps]:
            trainer.step(rows)
        return args.steps * args.batch_size

    trainer.learner.net.train()
    train(0)  # warm-up
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        rows = train(1)
        sync()
        seconds = time.perf_counter() - t0
    print(f"device {device}; {cfg.pooler} batch {args.batch_size:,}; compile {trainer.cfg.compile}; {rows:,} rows in {seconds:.3f} s "
          f"= {rows / seconds:,.0f} rows/s (profiled, so slower than unprofiled)")
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
    if device == "cuda":
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
