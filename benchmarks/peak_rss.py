"""Shared by the benchmarks: measure a command or a measurement function in a child process, so that
each wall time and peak RSS is that child's alone.

* ``python -c MEASURE '<json argv>'`` prints ``{"wall": seconds, "peak_kb": kilobytes}``; the peak is
  the largest resident set of any waited-for child (Linux reports kilobytes), so the measuring
  process itself never counts.
* ``worker(script, name, job)`` runs ``script --worker name --job JSON`` (a benchmark script calling
  itself) and returns the dict its worker printed; ``serve_worker(workers, name, job)`` is the child's
  side: it runs ``workers[name](job)``, adds the child's own peak RSS (``peak_rss_mb``) and prints it.
* ``time_steps(cfg, prepared, steps)``: rows/s of a fixed number of training steps of dinbench's own
  loop (``Trainer.step``), for runs whose whole epoch takes too long on a small machine.
* ``run_options(parser[, device])`` / ``run_overrides(args)``: the pass-through run options (``--optimizer``,
  ``--compile``, ``--device``) that the training benchmarks hand to ``RunConfig`` unchanged, so a benchmark runs
  before and after an option or one of its choices exists in dinbench.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 2  # untimed steps before a timed fixed-step measurement (allocator, first touch of the tables)

MEASURE = '''
import json, resource, subprocess, sys, time
t = time.time()
done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stdout + done.stderr)
print(json.dumps({"wall": time.time() - t, "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
'''


def repo_env() -> dict[str, str]:
    """This environment with the repository first on PYTHONPATH (the checkout, not an installed copy)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def measure(command: list[str], cwd: Path = REPO) -> dict:
    """Run ``command`` in a fresh wrapper process; ``{"wall": s, "peak_kb": kB}`` of the command alone."""
    done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(command)], capture_output=True, text=True,
                          cwd=cwd, env=repo_env())
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak resident set so far, MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(script: str | Path, name: str, job: dict) -> dict:
    """Run one measurement in a fresh process (its own peak RSS); returns the dict it printed. The
    child's stderr goes straight to this process's (its progress lines, e.g. gpu.py's figure per
    pooler, stay in a log even when a time limit stops the measurement before its result)."""
    done = subprocess.run([sys.executable, str(Path(script).resolve()), "--worker", name, "--job", json.dumps(job)],
                          stdout=subprocess.PIPE, text=True, env=repo_env(), cwd=REPO)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{name} failed (exit {done.returncode}; its error output is above):\n{done.stdout[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def parse_or_serve(parser, workers: dict):
    """Parse the command line; in a child started by ``worker`` (hidden ``--worker``/``--job``), run its
    measurement and return None, else return the arguments."""
    import argparse

    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve_worker(workers, args.worker, args.job)
        return None
    return args


def serve_worker(workers: dict, name: str, job: str) -> None:
    """The child's side of ``worker``: run the measurement, print its result with this process's peak RSS."""
    result = workers[name](json.loads(job))
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result))


def run_options(parser, device: bool = False) -> None:
    """``--optimizer`` and ``--compile`` (and with ``device``, ``--device``), handed to RunConfig as given
    (checked by RunConfig itself)."""
    if device:
        # its own dest: a script with a --device of its own (gpu.py, compile.py) must not pass that on too
        parser.add_argument("--device", dest="run_device", default=None, help="RunConfig device: cpu, cuda or auto (default: cpu)")
    parser.add_argument("--optimizer", default=None,
                        help="RunConfig optimizer: adam (dense), lazy-adam, rowwise-adagrad or sgd "
                             "(default: RunConfig's default)")
    parser.add_argument("--compile", default=None, help="RunConfig compile: off, on or cuda-graphs (default: RunConfig's default)")


def run_overrides(args, device: str | None = None) -> dict:
    """The RunConfig fields the pass-through options set; a field this dinbench lacks stops with one line.
    ``device``: where the script itself trains (gpu.py's own ``--device``, not passed on), for the check
    that the device can run the ``--compile`` mode; else the passed-on device or RunConfig's default."""
    from dataclasses import fields

    from dinbench.config import RunConfig

    known = {f.name for f in fields(RunConfig)}
    out = {}
    if args.optimizer is not None:
        out["optimizer"] = args.optimizer
    if args.compile is not None:
        out["compile"] = args.compile
    if getattr(args, "run_device", None) is not None:  # run_options(device=True)'s --device only
        out["device"] = args.run_device
    missing = sorted(set(out) - known)
    if missing:
        sys.exit(f"this dinbench's RunConfig has no field {', '.join(missing)}: the option cannot be passed on yet")
    from dinbench.errors import DinbenchError

    try:
        cfg = RunConfig(**out)  # a bad value stops here in one line, not in a worker's traceback
        from dinbench.runtime import check_compile, resolve_device

        check_compile(cfg.compile, resolve_device(device or cfg.device))  # cuda-graphs without a GPU, likewise
    except DinbenchError as e:
        sys.exit(f"error: {e}")
    return out


def effective(overrides: dict, name: str):
    """The value of RunConfig field ``name`` that a run with ``overrides`` gets."""
    from dinbench.config import RunConfig

    return overrides.get(name, getattr(RunConfig(), name))


def time_steps(cfg, prepared, steps: int, warmup: int = WARMUP_STEPS) -> dict:
    """Train ``warmup`` untimed, then ``steps`` timed batches of the first epoch, exactly as
    ``Trainer.train_epoch`` runs them (``step(rows).item()``); rows/s of the timed ones."""
    import time

    from dinbench.runtime import LocalRuntime
    from dinbench.train import Trainer, TrainState

    trainer = Trainer(cfg, prepared, LocalRuntime())
    batches = trainer.batches(TrainState())
    if warmup + steps > len(batches):
        sys.exit(f"{steps} steps + {warmup} warm-up steps exceed the epoch's {len(batches)} batches")
    trainer.learner.net.train()
    for rows in batches[:warmup]:
        trainer.step(rows)[0].item()
    t0 = time.perf_counter()
    for rows in batches[warmup:warmup + steps]:
        trainer.step(rows)[0].item()
    seconds = time.perf_counter() - t0
    rows = sum(len(b) for b in batches[warmup:warmup + steps])
    return dict(rows_per_s=rows / seconds, train_rows=rows, train_seconds=seconds, epoch_rows=len(trainer.data.train))
