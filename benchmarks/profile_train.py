"""Where a training epoch's time goes: torch.profiler over one epoch of dinbench's own loop.

    python benchmarks/profile_train.py [--device auto] [--pooler din] [--batch-size 8192]
                                       [--dataset synthetic] [--data-dir DIR] [--rows 20]

One untimed warm-up epoch (``dinbench.train.Trainer.train_epoch``), then one profiled epoch; prints the
top ``--rows`` operators by device time (CUDA) or by self CPU time, and the epoch's wall time and rows/s.
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
    trainer.train_epoch(state)  # warm-up
    state.next_epoch()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        trainer.train_epoch(state)
        sync()
        seconds = time.perf_counter() - t0
    rows = len(trainer.data.train)
    print(f"device {device}; {cfg.pooler} batch {args.batch_size:,}; compile {trainer.cfg.compile}; {rows:,} rows in {seconds:.3f} s "
          f"= {rows / seconds:,.0f} rows/s (profiled, so slower than unprofiled)")
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
    if device == "cuda":
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
