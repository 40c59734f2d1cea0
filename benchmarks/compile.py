"""Does ``--compile`` pay? Training rows/s of poolers with compile off / on (/ cuda-graphs on CUDA).

    python benchmarks/compile.py [--device auto] [--poolers average,din] [--batch-size 1024]
                                 [--users 2500] [--epochs 2] [--threads 1] [--modes off,on,cuda-graphs]

What it measures, per pooler and ``--compile`` mode, on the embedded synthetic dataset (generated
here, offline; ``--users`` scales it) with the same config and seed: one ``train_run`` each,
``--epochs`` epochs (patience high enough that every epoch trains), and from its record

- ``first epoch s``: the first epoch's training seconds, compilation included (the inductor cache
  starts empty: a fresh ``TORCHINDUCTOR_CACHE_DIR`` unless one is set);
- ``rows/s``: training rows per second over the epochs after the first (compiled code warm), and
  its ratio to compile off;
- ``test AUC`` and its difference to compile off (the same seed: only float rounding may differ).

The first line names the device. ``cuda-graphs`` and ``on+cuda-graphs`` run only on CUDA (elsewhere it is refused, and
left out). Scoring (valid/test) is never compiled, so it is not timed here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--poolers", default="average,din")
    ap.add_argument("--modes", default="off,on,cuda-graphs",
                    help="compile modes to time (cuda-graphs and on+cuda-graphs: CUDA only)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--users", type=int, default=2500, help="synthetic users (the embedded default: 2500)")
    ap.add_argument("--epochs", type=int, default=2, help="at least 2: the first one compiles")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be at least 2 (the first epoch compiles; rows/s come from the others)")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="dinbench-inductor-"))
    sys.path.insert(0, str(REPO))
    import torch

    from dinbench.config import RunConfig
    from dinbench.errors import DinbenchError
    from dinbench.prepared import contract
    from dinbench.runtime import check_compile, resolve_device
    from dinbench.sources.synthetic import SyntheticConfig, generate, source_info
    from dinbench.train import train_run

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs, {args.threads} torch thread(s)"
    load = os.getloadavg()
    print(f"device: {device.type} ({name}); torch {torch.__version__}; load average {load[0]:.2f}; "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    modes = []
    for mode in args.modes.split(","):
        try:
            check_compile(mode, device)
            modes.append(mode)
        except DinbenchError as exc:
            print(f"left out: {exc}")
    with tempfile.TemporaryDirectory(prefix="dinbench-compile-") as tmp:
        synth = SyntheticConfig(users=args.users)
        behaviours, items = generate(synth)
        contract.prepare(behaviours, "synthetic", Path(tmp), source_info(synth), item_attributes=items)
        prepared = contract.load(Path(tmp), "synthetic")
        counts = prepared.manifest["counts"]
        print(f"synthetic: {counts['users']:,} users, {counts['train_samples']:,} train samples; batch "
              f"{args.batch_size:,}, embedding 32, max length 50, optimizer {RunConfig().optimizer} (the default), {args.epochs} epochs, seed 0\n")
        header = f"{'pooler':<10} {'compile':<21} {'first epoch s':>13} {'rows/s':>10} {'x off':>6} {'test AUC':>9} {'AUC - off':>10}"
        print(header)
        print("-" * len(header))
        for pooler in args.poolers.split(","):
            base = None
            for mode in modes:
                cfg = RunConfig(pooler=pooler, device=device.type, batch_size=args.batch_size, epochs=args.epochs,
                                patience=args.epochs, compile=mode)
                _, record = train_run(cfg, prepared, Path(tmp) / "results")
                epochs = record["epochs"]
                later = sum(e["train_seconds"] for e in epochs[1:])
                rows_s = record["train_rows"] * (len(epochs) - 1) / later
                auc = record["test"]["auc"]
                base = base or (rows_s, auc)
                print(f"{pooler:<10} {mode:<21} {epochs[0]['train_seconds']:>13.1f} {rows_s:>10,.0f} "
                      f"{rows_s / base[0]:>6.2f} {auc:>9.5f} {auc - base[1]:>+10.1e}", flush=True)


if __name__ == "__main__":
    main()
