"""Scale benchmark: prepare an Amazon-Electronics-sized raw pair and print wall time and peak RSS.

    python benchmarks/prepare_amazon_scale.py [--raw DIR] [--fraction 1.0]

Writes the synthetic pair with ``make_amazon_like.py`` into ``--raw`` (reused when already there),
then runs ``dinbench download amazon-electronics --from RAW`` in a child process with a fresh data
folder and reports the child's wall time and peak resident memory (``getrusage`` of the child,
which counts every byte the preparation held at once). The target: under 2 GB at full size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
from peak_rss import MEASURE  # noqa: E402  (benchmarks/ is on sys.path when a script runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=Path(tempfile.gettempdir()) / "dinbench-electronics-like")
    ap.add_argument("--fraction", type=float, default=1.0)
    args = ap.parse_args()
    raw = args.raw if args.fraction == 1.0 else args.raw.with_name(f"{args.raw.name}-{args.fraction:g}")
    if not (raw / "meta_Electronics.json.gz").is_file():
        t = time.time()
        subprocess.run([sys.executable, str(HERE / "make_amazon_like.py"), str(raw), "--fraction", str(args.fraction)], check=True)
        print(f"generated the raw pair in {time.time() - t:.0f}s")
    sizes = {p.name: p.stat().st_size for p in raw.glob("*.json.gz")}
    with tempfile.TemporaryDirectory() as data:
        # A fresh wrapper process runs the preparation, so the peak is the preparation's alone (the
        # generator above is another child of this process and would count in our own RUSAGE_CHILDREN).
        command = [sys.executable, "-m", "dinbench.cli", "download", "amazon-electronics", "--from", str(raw), "--data-dir", data]
        done = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(command)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"preparation failed:\n{done.stdout}\n{done.stderr}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        wall, peak_kb = figures["wall"], figures["peak_kb"]
        manifest = json.loads((Path(data) / "amazon-electronics" / "manifest.json").read_text())
    c, read = manifest["counts"], manifest["source"]["read"]
    print(f"raw pair: {', '.join(f'{k} {v / 1e6:,.0f} MB' for k, v in sizes.items())} (fraction {args.fraction:g})")
    print(f"prepared: {c['behaviours']:,} reviews, {c['users']:,} users, {c['items']:,} goods, {c['categories']:,} categories; "
          f"{read['meta_lines']:,} meta lines ({read['meta_lines_parsed']:,} parsed); "
          f"{c['train_samples']:,} train / {c['valid_samples']:,} valid / {c['test_samples']:,} test samples")
    print(f"wall time {wall:.1f} s, peak RSS {peak_kb / 1024:,.0f} MiB ({'under' if peak_kb < 2 * 1024 * 1024 else 'OVER'} 2 GB)")


if __name__ == "__main__":
    main()
