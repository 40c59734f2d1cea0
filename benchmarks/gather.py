"""Gather benchmark: building one training batch with the numpy oracle vs the device store's torch gather.

    python benchmarks/gather.py [--data-dir DIR] [--interactions CSV] [--threads 1] [--device cpu|cuda]

On amazon-beauty (imported from ``--interactions`` into ``--data-dir`` when it is not prepared there,
as benchmarks/speed.py does), max length 50, for batches of 1,024 and 8,192 random train rows: ms per
batch of

- ``numpy oracle``: ``batches.NumpyOracle.batch`` (the gather of earlier versions: numpy on the
  host, CPU tensors; on CUDA a training step then also had to pin and copy them);
- ``torch gather``: ``BehaviourStore.batch`` on ``--device`` with the epoch's order already there
  (what training does); on CUDA timed with a synchronize after the last batch only;

and their ratio, all in the same run (the numbers depend on the machine's load; the ratio less so).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = Path(tempfile.gettempdir()) / "dinbench-speed" / "datasets"
BATCHES = (1024, 8192)
MAX_LEN = 50
sys.path.insert(0, str(HERE))
from speed import ensure_dataset  # noqa: E402  (imports amazon-beauty when it is not prepared yet)


def per_batch_ms(make, batches, sync) -> float:
    """Best of 3 passes over ``batches``: ms per batch."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for b in batches:
            make(b)
        sync()
        best = min(best, time.perf_counter() - t)
    return best / len(batches) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--interactions", type=Path, default=REPO.parent / "shared" / "data" / "amazon-beauty" / "interactions.csv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, default=20, help="batches per pass")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch

    from dinbench.batches import NumpyOracle, batch_indices, make_store
    from dinbench.prepared.contract import load

    torch.set_num_threads(args.threads)
    ensure_dataset(args.data_dir, args.interactions)
    prepared = load(args.data_dir, "amazon-beauty")
    device = torch.device(args.device)
    store, oracle = make_store(prepared, device), NumpyOracle(prepared)
    train = store.samples(prepared.splits["train"], MAX_LEN)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"amazon-beauty train, {len(train):,} rows, max length {MAX_LEN}; {args.threads} thread(s); "
          f"torch gather on {device}")
    for size in BATCHES:
        idx = batch_indices(len(train), size, np.random.default_rng(0))[: args.batches]
        order = store.rows(np.concatenate(idx))  # the epoch's order on the device, as training uploads it
        parts = [order[i * size : (i + 1) * size] for i in range(len(idx))]
        numpy_ms = per_batch_ms(lambda b: oracle.batch(train, b), idx, lambda: None)
        torch_ms = per_batch_ms(lambda r: store.batch(train, r), parts, sync)
        print(f"batch {size:5,d}: numpy oracle {numpy_ms:7.2f} ms, torch gather {torch_ms:7.2f} ms per batch; "
              f"numpy / torch = {numpy_ms / torch_ms:.2f}", flush=True)


if __name__ == "__main__":
    main()
