"""Preparation and training at MovieLens-20M and Taobao size: wall time, peak RSS and training rows/s.

    python benchmarks/prepare_scale.py movielens [--raw DIR] [--fraction 1.0] [--steps 300] [--threads 2]
    python benchmarks/prepare_scale.py taobao [--raw DIR] [--rows 5000000,10000000,20000000] [--steps 300]

Inputs are synthetic, of the real sizes and in the real file layouts, written by
``make_scale_inputs.py`` into ``--raw`` (reused when already there; ``--delete-raw`` removes them
after measuring). Preparation goes through dinbench's real import path, in a fresh child process
whose wall time and peak resident memory (``getrusage`` of the child) are printed:

- ``movielens``: ``dinbench download movielens-20m --from RAW/ml-20m`` (20,000,263 ratings, 138,493
  users, 27,278 movies at ``--fraction 1``). Target: peak RSS under 8 GB.
- ``taobao``: ``dinbench download taobao --from RAW/rows-N/UserBehavior.csv`` for each ``--rows``
  (Taobao-shaped fractions: users, items and categories scale with the rows). A least-squares line
  through (rows, peak RSS) and (rows, wall) is extrapolated to the real 100,150,807 rows and printed
  as EXTRAPOLATED. Target: peak RSS under 16 GB at full size.

Then training on the prepared dataset (the largest Taobao fraction), in another child process with
``--threads`` torch threads: ``din`` (``--pooler``) at the default batch size, ``--steps`` steps of
dinbench's own training step after 2 untimed ones (``--steps 0``: one whole epoch of
``dinbench.train.fit``, which takes about ten minutes and more on 2 cores at ML-20M size); its rows/s and
the peak RSS of the process (dataset load included). ``--optimizer``/``--compile`` go to RunConfig.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peak_rss import REPO, effective, measure, run_options, run_overrides, parse_or_serve, time_steps, worker  # noqa: E402

GB = 1024 ** 3
TARGET_GB = {"movielens": 8, "taobao": 16}
TAOBAO_FULL_ROWS = 100_150_807


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", nargs="?", choices=("movielens", "taobao"))
    ap.add_argument("--raw", type=Path, default=Path(tempfile.gettempdir()) / "dinbench-scale-inputs")
    ap.add_argument("--data-dir", type=Path, default=None, help="where to prepare (default: a temporary folder, deleted)")
    ap.add_argument("--fraction", type=float, default=1.0, help="movielens: a fraction of ML-20M's size")
    ap.add_argument("--rows", default="5000000,10000000,20000000", help="taobao: behaviours of each measured fraction")
    ap.add_argument("--pooler", default="din")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300, help="timed training steps (0: one whole epoch; -1: no training)")
    ap.add_argument("--delete-raw", action="store_true", help="delete the generated inputs after measuring")
    run_options(ap, device=True)
    args = parse_or_serve(ap, {"train": work_train})
    if args is None:  # a measurement child: done
        return

    sys.path.insert(0, str(REPO))
    overrides = run_overrides(args)
    load = os.getloadavg()
    print(f"dinbench scale benchmark ({args.kind}), {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    data = Path(tempfile.mkdtemp(prefix="dinbench-scale-")) if args.data_dir is None else args.data_dir
    try:
        if args.kind == "movielens":
            raw = args.raw / (f"ml-{args.fraction:g}" if args.fraction != 1 else "ml-20m-like")
            generate(["movielens", str(raw), "--fraction", str(args.fraction)], raw / "ml-20m" / "movies.csv")
            fig, manifest = prepare("movielens-20m", raw / "ml-20m", data)
            report_prepare(f"ML-20M x {args.fraction:g}", fig, manifest, TARGET_GB["movielens"] if args.fraction == 1 else None)
            name = "movielens-20m"
        else:
            points = []
            for rows in (int(r) for r in args.rows.split(",")):
                raw = args.raw / f"taobao-{rows}"
                generate(["taobao", str(raw), "--rows", str(rows)], raw / "UserBehavior.csv")
                shutil.rmtree(data / "taobao", ignore_errors=True)
                fig, manifest = prepare("taobao", raw / "UserBehavior.csv", data)
                report_prepare(f"Taobao, {rows:,} rows", fig, manifest, None)
                points.append((rows, fig["peak_kb"] * 1024, fig["wall"]))
            extrapolate(points)
            name = "taobao"
        if args.steps >= 0:
            job = dict(data_dir=str(data), name=name, pooler=args.pooler, threads=args.threads, steps=args.steps,
                       overrides=overrides)
            r = worker(__file__, "train", job)
            how = f"{r['train_rows']:,} rows = {args.steps} steps after 2 untimed (of an epoch of {r['epoch_rows']:,})" \
                if args.steps else f"one epoch of {r['train_rows']:,} rows"
            print(f"training {args.pooler} on {name}, {args.threads} threads, batch {r['batch_size']:,}, optimizer "
                  f"{effective(overrides, 'optimizer')}: {r['rows_per_s']:,.0f} rows/s ({how}, {r['train_seconds']:.1f} s); "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MB (dataset load included)")
    finally:
        if args.data_dir is None:
            shutil.rmtree(data, ignore_errors=True)
        if args.delete_raw:
            shutil.rmtree(args.raw, ignore_errors=True)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def generate(argv: list[str], done: Path) -> None:
    if done.is_file():
        return
    t = time.time()
    subprocess.run([sys.executable, str(HERE / "make_scale_inputs.py"), *argv], check=True)
    print(f"generated {argv[1]} in {time.time() - t:.0f} s", flush=True)


def prepare(name: str, source: Path, data: Path) -> tuple[dict, dict]:
    """``dinbench download NAME --from SOURCE`` in a child; its figures and the manifest."""
    fig = measure([sys.executable, "-m", "dinbench.cli", "download", name, "--from", str(source), "--data-dir", str(data),
                   "--force"])
    return fig, json.loads((data / name / "manifest.json").read_text())


def report_prepare(what: str, fig: dict, manifest: dict, target_gb: float | None) -> None:
    c = manifest["counts"]
    peak = fig["peak_kb"] * 1024
    verdict = f" (target < {target_gb} GB: {'met' if peak < target_gb * GB else 'missed'})" if target_gb else ""
    print(f"prepare {what}: {c['input_rows']:,} rows -> {c['behaviours']:,} behaviours, {c['users']:,} users, "
          f"{c['items']:,} items, {c['categories']:,} categories; {c['train_samples']:,} train / {c['valid_samples']:,} "
          f"valid / {c['test_samples']:,} test samples; wall {fig['wall']:.1f} s, peak RSS {peak / GB:.2f} GB{verdict}",
          flush=True)


def extrapolate(points: list[tuple[int, float, float]]) -> None:
    """Least-squares lines through the measured fractions, evaluated at Taobao's full row count."""
    rows = np.array([p[0] for p in points], dtype=float)
    if len(rows) < 2:
        print("one fraction only: nothing to extrapolate from")
        return
    for label, values, unit in (("peak RSS", np.array([p[1] for p in points]) / GB, "GB"),
                                ("wall time", np.array([p[2] for p in points]), "s")):
        slope, intercept = np.polyfit(rows, values, 1)
        full = intercept + slope * TAOBAO_FULL_ROWS
        per_m = slope * 1e6
        print(f"EXTRAPOLATED (not measured) {label} at {TAOBAO_FULL_ROWS:,} rows: {full:,.2f} {unit} "
              f"(line through {len(rows)} measured fractions: {intercept:,.2f} {unit} + {per_m:,.3f} {unit} per million rows)"
              + (f"; target < {TARGET_GB['taobao']} GB: {'met' if full < TARGET_GB['taobao'] else 'missed'}" if unit == "GB" else ""))


def work_train(job: dict) -> dict:
    from dinbench.config import RunConfig
    from dinbench.prepared.contract import load
    from dinbench.runtime import set_threads
    from dinbench.train import fit

    set_threads(job["threads"])
    prepared = load(Path(job["data_dir"]), job["name"])
    cfg = RunConfig(dataset=job["name"], pooler=job["pooler"], epochs=1, **job["overrides"])
    if job["steps"]:
        return {**time_steps(cfg, prepared, job["steps"]), "batch_size": cfg.batch_size}
    fitted = fit(cfg, prepared)
    return dict(rows_per_s=fitted.train_rows_per_s, train_rows=fitted.train_rows, epoch_rows=fitted.train_rows,
                train_seconds=fitted.history[0]["train_seconds"], batch_size=cfg.batch_size)


if __name__ == "__main__":
    main()
