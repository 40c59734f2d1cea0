"""Long histories: memory and speed of one training step as the history grows (issue 16, item 3).

For each history length L (default 100, 250, 500, 1000) and pooler (sim:hard, sim:soft, eta,
din:softmax, average), a fresh process builds dinbench's Trainer on synthetic data with long
histories (``--max-length 1500``, mean 1,200 behaviours per user), takes a fixed batch of B training
rows whose histories are all exactly L long (``--max-len L``), and measures

* **step peak MB** (the ratios): how far one training step (``Trainer.update``: forward, backward,
  optimizer) raises the process's resident set above where it stood before the step: Linux's peak
  resident set (VmHWM) is reset just before the step (``/proc/self/clear_refs``) and read after it.
  glibc's malloc is told to map every block over 64 KiB afresh and unmap it when freed
  (``MALLOC_MMAP_THRESHOLD_``), so memory a step frees is not kept out of the count. Linear growth in
  L reads as peak(L) / peak(100) <= L / 100 (the step's fixed part, the optimizer's, makes it less).
* **saved MB**: the bytes of the tensors autograd saves for the backward of one training forward
  (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once): exact, allocator-free.
* **rows/s**: training rows per second of ``Trainer.update`` on that batch, after one untimed step.

    flock /work/bench.lock python benchmarks/long_history.py             # CPU, 1 thread
    python benchmarks/long_history.py --lengths 100,1000 --batch 64 --poolers sim:hard,din:softmax

A process per measurement keeps peaks and caches from leaking between them (benchmarks/peak_rss.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_rss import parse_or_serve, worker  # noqa: E402

POOLERS = "sim:hard,sim:soft,eta,din:softmax,average"
LENGTHS = "100,250,500,1000"


def make_data(root: Path) -> None:
    """Synthetic data with long histories (mean 1,200, up to 1,500): every L <= 1,000 has many full rows."""
    from dinbench.prepared import contract
    from dinbench.sources.synthetic import SyntheticConfig, generate, source_info

    cfg = SyntheticConfig(users=60, mean_length=1200.0, max_length=1500)
    behaviours, items = generate(cfg)
    contract.prepare(behaviours, "synthetic", root, source_info(cfg), item_attributes=items)


def measure(job: dict) -> dict:
    """One pooler at one length, in this (fresh) process."""
    import numpy as np
    import torch

    from dinbench.config import RunConfig
    from dinbench.prepared import contract
    from dinbench.runtime import LocalRuntime
    from dinbench.train import Trainer

    torch.set_num_threads(job["threads"])
    length, rows = job["length"], job["batch"]
    data = contract.load(Path(job["data"]), "synthetic")
    cfg = RunConfig(pooler=job["pooler"], max_len=length, batch_size=rows, seed=0)
    trainer = Trainer(cfg, data, LocalRuntime())
    train = trainer.data.train
    full = np.flatnonzero(np.asarray(train.hist_len) == length)  # rows with exactly L behaviours
    if len(full) < rows:
        raise SystemExit(f"only {len(full)} training rows have {length} behaviours (need {rows})")
    idx = np.random.default_rng(0).choice(full, size=rows, replace=False)
    batch = trainer.data.store.batch(train, idx)
    assert batch.mask.shape[1] == length and bool(batch.mask.all())
    model = trainer.learner.net.train()

    storages: dict[int, int] = {}  # storage address -> bytes, each storage once

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, _ = model(batch)
    saved = sum(storages.values())
    del logits
    model.zero_grad(set_to_none=True)
    trainer.update(batch, rows, rows)[0].item()  # untimed: allocator, optimizer state
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set to the current one
    trainer.update(batch, rows, rows)[0].item()
    step_peak = _status("VmHWM") - before
    t0 = time.perf_counter()
    for _ in range(job["steps"]):
        trainer.update(batch, rows, rows)[0].item()
    seconds = time.perf_counter() - t0
    return {"step_peak_mb": step_peak / 1024, "saved_mb": saved / 2**20, "rows_per_s": rows * job["steps"] / seconds}


def _status(field: str) -> int:
    """A kB field of /proc/self/status (VmRSS: resident now, VmHWM: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/self/status has no {field} (this benchmark needs Linux)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--poolers", default=POOLERS)
    parser.add_argument("--lengths", default=LENGTHS)
    parser.add_argument("--batch", type=int, default=256, help="rows per batch (fixed across lengths)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per measurement")
    parser.add_argument("--threads", type=int, default=1)
    args = parse_or_serve(parser, {"measure": measure})
    if args is None:
        return
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # the workers' large blocks are unmapped when freed
    lengths = [int(x) for x in args.lengths.split(",")]
    specs = [s.strip() for s in args.poolers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        make_data(Path(tmp))
        results = {}
        for spec in specs:
            for length in lengths:
                job = dict(pooler=spec, length=length, batch=args.batch, steps=args.steps, threads=args.threads,
                           data=tmp)
                results[spec, length] = r = worker(__file__, "measure", job)
                print(f"  {spec:12s} L={length:5d}  step peak {r['step_peak_mb']:7.1f} MB  saved {r['saved_mb']:7.1f} MB"
                      f"  {r['rows_per_s']:6.0f} rows/s", file=sys.stderr, flush=True)
    base = lengths[0]
    print(f"\none training step, batch {args.batch}, every row exactly L behaviours, {args.threads} thread(s)")
    print(f"step peak MB (x = ratio to L={base}; linear growth: at most L/{base}) | saved for backward MB | rows/s")
    print(f"{'pooler':12s}" + "".join(f"  {'L=' + str(n):>30s}" for n in lengths))
    print(f"{'L/' + str(base):12s}" + "".join(f"  {format(n / base, '.2f'):>30s}" for n in lengths))
    for spec in specs:
        cells = []
        for n in lengths:
            r = results[spec, n]
            ratio = r["step_peak_mb"] / results[spec, base]["step_peak_mb"]
            cells.append(f"{r['step_peak_mb']:6.1f} x{ratio:5.2f} | {r['saved_mb']:6.1f} | {r['rows_per_s']:5.0f}")
        print(f"{spec:12s}" + "".join(f"  {c:>30s}" for c in cells))


if __name__ == "__main__":
    main()
