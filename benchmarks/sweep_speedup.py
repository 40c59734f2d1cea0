"""Speedup of a local sweep over the same runs made one after another; optionally a 2-process DDP run.

    python benchmarks/sweep_speedup.py [--pooler average,din] [--seeds 3] [--epochs 2] [--ddp DATASET]

On a fresh copy of the embedded ``synthetic`` dataset (2,500 users, 105,318 train samples) it times,
as separate commands (process start-up included, as a user would see it):

    A  dinbench run   ... --threads 1                          (1 process, 1 thread)
    B  dinbench run   ... --threads T                          (1 process, T = all cores)
    C  dinbench sweep ... --workers W --threads 1              (W = all cores processes, 1 thread each)

and prints the wall times, the speedups A/C and B/C, and whether the sweep's test metrics equal the
1-thread sequential runs' (they must: same seed, same thread count). ``--ddp DATASET`` adds one run of
``--ddp-pooler`` on a prepared dataset (give ``--data-dir``), one epoch, as 1 process x 1 thread,
1 process x T threads and ``torchrun`` with T gloo processes x 1 thread.
Run it on a quiet machine (``flock /work/bench.lock``) and note ``uptime`` beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "dinbench.cli"]


def timed(command: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall


def metrics(results: Path) -> dict[tuple[str, int], tuple[float, float]]:
    out = {}
    for path in results.glob("*/record.json"):
        r = json.loads(path.read_text())
        out[(r["pooler"], r["seed"])] = (r["test"]["auc"], r["test"]["gauc"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pooler", default="average,din")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="measure A, C, B this many times, interleaved; the minimum counts")
    ap.add_argument("--ddp", default=None, help="also time one run on this prepared dataset under torchrun")
    ap.add_argument("--ddp-pooler", default="din:softmax")
    ap.add_argument("--data-dir", type=Path, default=None, help="where --ddp's dataset is prepared")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"machine: {cores} cores; load before: {os.getloadavg()[0]:.2f} (1-min average)")
    with tempfile.TemporaryDirectory(prefix="dinbench-sweep-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        timed([*CLI, "download", "synthetic", "--data-dir", str(data)])
        grid = ["--pooler", args.pooler, "--seeds", str(args.seeds), "--epochs", str(args.epochs), "--data-dir", str(data)]
        commands = {
            "A": [*CLI, "run", *grid, "--threads", "1"],
            "B": [*CLI, "run", *grid, "--threads", str(cores)],
            "C": [*CLI, "sweep", *grid, "--workers", str(cores), "--threads", "1"],
        }
        trials: dict[str, list[float]] = {k: [] for k in commands}
        for t in range(args.repeat):
            for key in ("A", "C", "B"):  # interleaved, so a change of background load hits all three
                out = tmp / f"{key}{t}"
                trials[key].append(timed([*commands[key], "--results-dir", str(out)]))
                print(f"  trial {t + 1} {key}: {trials[key][-1]:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
        walls = {k: min(v) for k, v in trials.items()}
        a, c = metrics(tmp / "A0"), metrics(tmp / "C0")
        runs = len(a)
        print(f"{runs} runs ({args.pooler} x {args.seeds} seeds, {args.epochs} epochs) on synthetic:")
        print(f"  A  run, 1 process x 1 thread        {walls['A']:7.1f} s")
        print(f"  B  run, 1 process x {cores} threads      {walls['B']:7.1f} s")
        print(f"  C  sweep, {cores} workers x 1 thread     {walls['C']:7.1f} s")
        print(f"  speedup of the sweep: {walls['A'] / walls['C']:.2f}x over A, {walls['B'] / walls['C']:.2f}x over B"
              + (f" (fastest of {args.repeat} interleaved trials each)" if args.repeat > 1 else ""))
        print(f"  sweep metrics equal to A (same seed, 1 thread): {a == c}")
        if args.ddp:
            ddp_grid = ["--dataset", args.ddp, "--pooler", args.ddp_pooler, "--epochs", "1"]
            if args.data_dir:
                ddp_grid += ["--data-dir", str(args.data_dir)]
            w1 = timed([*CLI, "run", *ddp_grid, "--threads", "1", "--results-dir", str(tmp / "D1")])
            wt = timed([*CLI, "run", *ddp_grid, "--threads", str(cores), "--results-dir", str(tmp / "DT")])
            wd = timed([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(cores),
                        "-m", "dinbench.cli", "run", "--distributed", *ddp_grid, "--threads", "1",
                        "--results-dir", str(tmp / "DD")])
            rate = {k: json.loads(next((tmp / k).glob("*/record.json")).read_text())["train_rows_per_s"]
                    for k in ("D1", "DT", "DD")}
            print(f"one {args.ddp_pooler} run on {args.ddp}, 1 epoch (wall incl. start-up; training rows/s):")
            print(f"  1 process x 1 thread              {w1:7.1f} s  {rate['D1']:9,.0f} rows/s")
            print(f"  1 process x {cores} threads            {wt:7.1f} s  {rate['DT']:9,.0f} rows/s")
            print(f"  torchrun {cores} gloo processes x 1 thread {wd:7.1f} s  {rate['DD']:9,.0f} rows/s")
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min average)")


if __name__ == "__main__":
    main()
