"""How long `dinbench report` takes over 100 run records, as a whole process, and its peak RSS.

Writes synthetic run records in the real format (``record.json`` from a real ``RunConfig``, test
and valid predictions as Parquet with the columns ``train.predictions_frame`` writes) into a
temporary folder, then times ``python -m dinbench.cli report --results-dir THAT`` in a fresh
process (``peak_rss.measure``: wall seconds and the child's peak RSS), ``--repeat`` times.

The default grid is 10 poolers x 5 seeds x 2 configurations (batch 256 and batch 1024) = 100
records over a test set the size of `synthetic`'s (2,500 users, two test samples each), which is
what the default `dinbench run` makes. Target: under 2 s.

    python benchmarks/report_speed.py                    # 100 records, the terminal table
    python benchmarks/report_speed.py --users 20000      # a bigger test set (bootstrap cost)
    python benchmarks/report_speed.py --format csv --repeat 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_rss import measure  # noqa: E402

POOLERS = ["none", "average", "sum", "max", "last", "time-decay", "dot:softmax", "bilinear:softmax", "din:none",
           "din:softmax"]
CONFIGS = [{"batch_size": 256}, {"batch_size": 1024}]


def write_records(root: Path, users: int, seeds: int = 5) -> int:
    """The synthetic records: every pooler x configuration x seed, predictions included. Returns the count."""
    from dinbench.atomic import write_json_atomic
    from dinbench.config import RunConfig
    from dinbench.metrics import evaluate
    from dinbench.records import SCHEMA, environment

    rng = np.random.default_rng(0)
    user = np.repeat(np.arange(1, users + 1), 2)
    label = np.tile(np.array([1.0, 0.0], dtype=np.float32), users)
    skill = {p: 0.2 + 0.6 * i / len(POOLERS) for i, p in enumerate(POOLERS)}  # how well each pooler separates
    n = 0
    for c, overrides in enumerate(CONFIGS):
        for pooler in POOLERS:
            for seed in range(seeds):
                cfg = RunConfig(pooler=pooler, seed=seed, **overrides)
                run_id = f"20261201-{c:02d}{n:04d}-synthetic-{pooler.replace(':', '-')}-s{seed}-{n:06x}"
                run_dir = root / run_id
                run_dir.mkdir(parents=True)
                files = {}
                for split in ("test", "valid"):
                    score = 1 / (1 + np.exp(-(skill[pooler] * (2 * label - 1) * 3 + rng.normal(size=label.size))))
                    frame = pd.DataFrame({"user": user, "label": label, "score": score,
                                          "hist_len": rng.integers(1, 50, size=label.size),
                                          "attention_sum": rng.random(label.size)})
                    files[split] = f"predictions_{split}.parquet"
                    frame.to_parquet(run_dir / files[split], engine="pyarrow", index=False)
                    if split == "test":
                        test = evaluate(user, label, score)
                epochs = [{"epoch": e, "train_loss": 0.6 - 0.02 * e, "train_seconds": 10.0,
                           "valid": {"auc": 0.8, "gauc": 0.8 + 0.001 * e, "logloss": 0.5}} for e in range(1, 6)]
                write_json_atomic(run_dir / "record.json", {
                    "schema": SCHEMA, "run_id": run_id, "status": "completed",
                    "dataset": {"name": "synthetic", "fingerprint": "f" * 40, "counts": {}, "source": "synthetic"},
                    "pooler": cfg.pooler, "architecture": cfg.architecture, "seed": seed, "config": cfg.to_dict(),
                    "config_key": cfg.selection_key(), "selection": "best valid GAUC", "epochs": epochs,
                    "best_epoch": 5, "test": test, "predictions": files, "artifacts": {"model": "model.pt"},
                    "train_rows": 50_000, "train_rows_per_s": 20_000.0 + 100 * n, "parameters": 100_000,
                    "device": "cpu", "world_size": 1, "wall_seconds": 30.0, "started": "2026-12-01T00:00:00+0000",
                    **environment(),
                })
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2500, help="test users per record (two samples each)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per pooler and configuration")
    parser.add_argument("--repeat", type=int, default=3, help="timed report processes")
    parser.add_argument("--format", default="table", help="report --format")
    parser.add_argument("--wide", action="store_true", help="report --wide")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dinbench-report-speed-") as tmp:
        results = Path(tmp) / "results"
        t = time.time()
        n = write_records(results, args.users, args.seeds)
        print(f"wrote {n} records ({args.users:,} test users each) in {time.time() - t:.1f}s to {results}")
        command = [sys.executable, "-m", "dinbench.cli", "report", "--results-dir", str(results), "--format", args.format]
        if args.wide:
            command.append("--wide")
        walls, peaks = [], []
        for i in range(args.repeat):
            m = measure(command)
            walls.append(m["wall"])
            peaks.append(m["peak_kb"] / 1024)
            print(f"run {i + 1}: {m['wall']:.2f}s, peak RSS {m['peak_kb'] / 1024:.0f} MB")
        print(json.dumps({"records": n, "users": args.users, "format": args.format, "wide": args.wide,
                          "wall_s_min": round(min(walls), 2), "wall_s_median": round(float(np.median(walls)), 2),
                          "peak_rss_mb_max": round(max(peaks))}))


if __name__ == "__main__":
    main()
