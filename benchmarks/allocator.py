"""What keeping freed memory (dinbench.allocator) saves a CPU training step: the same steps with and without.

    python benchmarks/allocator.py [--poolers din,average] [--rounds 30] [--steps 10] [--threads 1]
                                   [--data-dir DIR] [--interactions CSV]

Per pooler, two child processes train the same model on the same amazon-beauty batches (batch 1,024,
the pooler's default variant, dinbench's default optimizer): one as every dinbench training process
does (``kept``), one under glibc's own malloc behaviour (``default``: the child gets a malloc tunable that
changes nothing, ``GLIBC_TUNABLES=glibc.malloc.perturb=0``, and dinbench leaves malloc alone when the
user tunes it). They take turns of ``--steps`` steps for ``--rounds`` rounds, the first to go alternating,
after one untimed turn each, so both are measured over the same minutes of the same machine. Printed
per pooler: each side's median step time, minor page faults and kernel (system) CPU time per step, its
process's peak resident memory, and the median and range of the per-round ratio default / kept (above 1: keeping is faster).

Linux with glibc only (elsewhere dinbench.allocator sets nothing, and there is nothing to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from peak_rss import repo_env  # noqa: E402
from speed import DEFAULT_DATA, ensure_dataset  # noqa: E402

UNCHANGED_TUNABLE = "glibc.malloc.perturb=0"  # glibc's default value: malloc behaves as untuned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poolers", default="din,average")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--steps", type=int, default=10, help="steps per turn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--interactions", type=Path, default=REPO.parent / "shared" / "data" / "amazon-beauty" / "interactions.csv")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return serve(args)
    sys.path.insert(0, str(REPO))
    from dinbench import allocator

    if allocator._libc() is None or allocator.user_tuned(os.environ):
        sys.exit("needs glibc and no malloc settings of your own (GLIBC_TUNABLES / MALLOC_* / LD_PRELOAD): "
                 "dinbench.allocator sets nothing otherwise")
    ensure_dataset(args.data_dir, args.interactions)
    load = os.getloadavg()
    print(f"allocator benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, torch threads "
          f"{args.threads}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; amazon-beauty, batch 1,024; "
          f"{args.rounds} rounds of {args.steps} steps per side", flush=True)
    for pooler in args.poolers.split(","):
        compare(pooler, args)


def compare(pooler: str, args) -> None:
    sides = {name: Side(name, pooler, args) for name in ("kept", "default")}
    for side in sides.values():
        side.turn()  # untimed: first touch of the tables, the allocator's first blocks
        side.reset()
    ratios = []
    for r in range(args.rounds):
        order = ("kept", "default") if r % 2 == 0 else ("default", "kept")
        took = {name: sides[name].turn() for name in order}
        ratios.append(took["default"] / took["kept"])
    print(f"\n{pooler}:")
    for side in sides.values():
        print("  " + side.summary(), flush=True)
        side.close()
    print(f"  step time default / kept: median {statistics.median(ratios):.3f} over {len(ratios)} rounds "
          f"(range {min(ratios):.3f}-{max(ratios):.3f})", flush=True)


class Side:
    """One child process training ``pooler``; ``turn`` trains its next ``--steps`` steps and returns their seconds."""

    def __init__(self, name: str, pooler: str, args) -> None:
        env = repo_env()
        env.pop("GLIBC_TUNABLES", None)
        if name == "default":
            env["GLIBC_TUNABLES"] = UNCHANGED_TUNABLE
        command = [sys.executable, str(Path(__file__).resolve()), "--child", pooler, "--threads", str(args.threads),
                   "--steps", str(args.steps), "--data-dir", str(args.data_dir)]
        self.name = name
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        self.state = self._read()["allocator"]
        if self.state != {"kept": "kept", "default": "user"}[name]:
            sys.exit(f"the {name} child's allocator state is {self.state!r}: nothing to compare")
        self.reset()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"the {self.name} child stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def reset(self) -> None:
        self.steps, self.seconds, self.faults, self.kernel, self.per_step = 0, 0.0, 0, 0.0, []

    def turn(self) -> float:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        r = self._read()
        self.steps += r["steps"]
        self.seconds += r["seconds"]
        self.faults += r["faults"]
        self.kernel += r["kernel"]
        self.per_step.append(r["seconds"] / r["steps"])
        self.peak_mb = r["peak_mb"]
        return r["seconds"]

    def summary(self) -> str:
        label = "kept (dinbench.allocator)" if self.name == "kept" else "default (glibc's own thresholds)"
        return (f"{label:33s} median step {statistics.median(self.per_step) * 1e3:.2f} ms, "
                f"{self.steps * 1024 / self.seconds:,.0f} rows/s, {self.faults / self.steps:,.0f} page faults and "
                f"{self.kernel / self.steps * 1e3:.2f} ms of kernel time a step; peak RSS {self.peak_mb:,.0f} MB")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def serve(args) -> None:
    """The child: a Trainer (which applies dinbench.allocator unless malloc is tuned), the epoch's full batches,
    then ``go`` -> train the next ``--steps`` of them (wrapping round) and print what they took."""
    from dinbench import allocator
    from dinbench.config import RunConfig
    from dinbench.prepared.contract import load
    from dinbench.runtime import LocalRuntime, set_threads
    from dinbench.train import Trainer, TrainState

    set_threads(args.threads)
    prepared = load(args.data_dir, "amazon-beauty")
    trainer = Trainer(RunConfig(dataset=prepared.name, pooler=args.child, batch_size=1024, device="cpu"),
                      prepared, LocalRuntime())
    batches = [trainer.data.store.rows(b) for b in trainer.batches(TrainState()) if len(b) == 1024]
    trainer.learner.net.train()
    print(json.dumps({"allocator": allocator.state()}), flush=True)
    i = 0
    for command in sys.stdin:
        if command.strip() != "go":
            break
        before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(args.steps):
            trainer.step(batches[i % len(batches)])
            i += 1
        seconds, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"steps": args.steps, "seconds": seconds, "faults": after.ru_minflt - before.ru_minflt,
                          "kernel": after.ru_stime - before.ru_stime, "peak_mb": after.ru_maxrss / 1024}), flush=True)


if __name__ == "__main__":
    main()
