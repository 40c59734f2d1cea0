"""How long the command line takes to answer: ``dinbench --help`` and friends, as whole processes.

    python benchmarks/startup.py [--repeat 7]

Times, each as a fresh process (interpreter start-up included, as a user sees it):

    dinbench --help            dinbench run --help            dinbench report --help
    dinbench --version
    peer: python -c pass       (the floor: the interpreter alone)
    peer: python -c "import torch"   (what one heavy import costs on this machine)

The commands run interleaved (one of each per round, ``--repeat`` rounds) and the median of each is
printed with its ratio to the peers measured in the same rounds, so a noisy or slow machine moves
both sides. ``--help`` must not import torch, pandas or matplotlib (tests/test_startup.py checks
that without timing); this script shows what that buys. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "dinbench.cli"]
COMMANDS = {
    "dinbench --help": CLI + ["--help"],
    "dinbench run --help": CLI + ["run", "--help"],
    "dinbench report --help": CLI + ["report", "--help"],
    "dinbench --version": CLI + ["--version"],
}
PEERS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def timed(command: list[str]) -> float | None:
    """Wall seconds of one run of ``command``; None when it fails (an older version without --version)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    t = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    return wall if done.returncode == 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="rounds (each runs every command once); medians are printed")
    args = ap.parse_args()
    everything = {**COMMANDS, **PEERS}
    for name, command in list(everything.items()):  # warm the file cache: the first start reads every .pyc
        if timed(command) is None:
            print(f"skipped: {name} fails on this version")
            del everything[name]
    times: dict[str, list[float]] = {name: [] for name in everything}
    for _ in range(args.repeat):
        for name, command in everything.items():
            times[name].append(timed(command))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    floor, torch_ = median["python -c pass"], median["python -c 'import torch'"]
    print(f"whole-process wall seconds, median of {args.repeat} interleaved rounds (min-max in brackets)")
    print(f"{'command':<28} {'median s':>9} {'range':>15} {'/ python -c pass':>17} {'/ import torch':>15}")
    for name, ts in times.items():
        print(f"{name:<28} {median[name]:>9.3f} {f'[{min(ts):.2f}-{max(ts):.2f}]':>15} "
              f"{median[name] / floor:>16.1f}x {median[name] / torch_:>14.2f}x")


if __name__ == "__main__":
    main()
