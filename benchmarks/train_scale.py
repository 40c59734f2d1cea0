"""Memory at scale: train on an Amazon-Electronics-sized dataset and print wall time and peak RSS.

    python benchmarks/train_scale.py [--raw DIR] [--data-dir DIR] [--pooler average] [--epochs 1] [--protocol paper] [--threads N]

Generates the synthetic Electronics-sized raw pair with ``make_amazon_like.py`` (reused when
already in ``--raw``), prepares it once into ``--data-dir`` (reused too; ~2.6 M training samples at
full size), then runs ``dinbench run --dataset amazon-electronics`` for ``--epochs`` epochs of
``--pooler`` under ``--protocol`` (default ``paper``: train + valid, 2.6 M training rows at full size,
as the DIN paper trains) in a fresh child process: a complete run (training, validation after each epoch, test,
predictions and model written), not a truncated one. Prints the child's wall time and peak resident
memory (``getrusage`` of the child). The target: under 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
from peak_rss import MEASURE  # noqa: E402  (benchmarks/ is on sys.path when a script runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tmp = Path(tempfile.gettempdir())
    ap.add_argument("--raw", type=Path, default=tmp / "dinbench-electronics-like")
    ap.add_argument("--data-dir", type=Path, default=tmp / "dinbench-electronics-data")
    ap.add_argument("--pooler", default="average")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--protocol", default="paper", help="paper (default): train on train + valid, ~2.6 M rows at full size; din: train only")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if not (args.raw / "meta_Electronics.json.gz").is_file():
        subprocess.run([sys.executable, str(HERE / "make_amazon_like.py"), str(args.raw)], check=True)
    if not (args.data_dir / "amazon-electronics" / "manifest.json").is_file():
        print(f"preparing amazon-electronics into {args.data_dir} ...", flush=True)
        subprocess.run([sys.executable, "-m", "dinbench.cli", "download", "amazon-electronics", "--from", str(args.raw),
                        "--data-dir", str(args.data_dir)], check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    manifest = json.loads((args.data_dir / "amazon-electronics" / "manifest.json").read_text())
    c = manifest["counts"]
    with tempfile.TemporaryDirectory() as results:
        command = [sys.executable, "-m", "dinbench.cli", "run", "--dataset", "amazon-electronics", "--pooler", args.pooler,
                   "--epochs", str(args.epochs), "--protocol", args.protocol,
                   "--data-dir", str(args.data_dir), "--results-dir", results]
        if args.threads:
            command += ["--threads", str(args.threads)]
        done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(command)], capture_output=True, text=True,
                              cwd=REPO, env=env)
        if done.returncode != 0:
            sys.exit(f"training failed:\n{done.stdout}\n{done.stderr}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        (record_path,) = Path(results).glob("*/record.json")
        record = json.loads(record_path.read_text())
    load = os.getloadavg()
    print(f"dataset: {c['behaviours']:,} behaviours, {c['users']:,} users, {c['items']:,} items; "
          f"{c['train_samples']:,} train / {c['valid_samples']:,} valid / {c['test_samples']:,} test samples")
    print(f"dinbench run --pooler {args.pooler} --epochs {args.epochs} --protocol {args.protocol} "
          f"({record['train_rows']:,} training rows): wall {figures['wall']:.0f} s, "
          f"training {record['train_rows_per_s']:,.0f} rows/s, test GAUC {record['test']['gauc']:.4f}, "
          f"peak RSS {figures['peak_kb'] / 1024:,.0f} MB (target < 2,048 MB); "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
