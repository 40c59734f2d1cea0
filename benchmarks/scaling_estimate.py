"""Measure per-pooler step costs on the data we have and extrapolate the paper's full grids.

    python benchmarks/scaling_estimate.py [--specs all] [--epochs-per-run 7] [--seeds 5] [--cores 32]

Measured here (one process, one torch thread, default settings), for every pooler spec, on batches
of two stand-ins: ``amazon-beauty`` (../shared/data/amazon-beauty; short histories; for Amazon
Electronics) and ``movielens-latest-small`` (../shared/data/ml-latest-small; histories mostly at the
50-behaviour cap; for MovieLens-20M):

- the time of a 256-row training step of a model whose embedding tables have the *target's* item and
  category counts (Adam updates whole tables, so a step grows with them), and of building the batch
  (the data path); together they give the training rows/s expected on the target. Checked against
  one real epoch of ``fit`` at the stand-in's own table sizes (printed as "check");
- scoring rows/s (4096-row batches);
- the per-step floor: a training step, and a scoring pass, on 8 rows with 64-row tables, i.e. the
  fixed cost of Python, autograd and operator dispatch that does not shrink on a GPU, because this
  small model's kernels are far shorter than their launches.

Extrapolated (printed as such): the wall time of ``--pooler all`` x ``--seeds`` on the full
datasets, from their sample counts (computed from the DIN paper's Table 2 counts under this
project's protocol), assuming ``--epochs-per-run`` epochs per run (early stopping stops at the best
epoch + patience + 1; on amazon-beauty the best epoch averaged 3.6), on

- one CPU box of ``--cores`` cores running a sweep of one-thread runs: the 1-core total / cores
  (linear in cores; benchmarks/sweep_speedup.py measures how true that is, here only up to 2 cores);
- one GPU: per step the measured data path plus the measured floor times an ASSUMED factor of 1 to
  2 for the GPU's own launches and kernels (there is no GPU on this machine: not measured);
- eight GPUs: a sweep with one worker per GPU, i.e. the one-GPU total / 8 (needs >= 8 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from dinbench import poolers  # noqa: E402
from dinbench.batches import batch_indices, make_store  # noqa: E402
from dinbench.config import RunConfig  # noqa: E402
from dinbench.prepared import contract  # noqa: E402
from dinbench.model.build import build_model  # noqa: E402
from dinbench.runtime import predict  # noqa: E402
from dinbench.train import fit  # noqa: E402

# Sample counts of the full datasets under this project's protocols (DIN protocol with a valid split).
# Amazon Electronics (Table 2: 1,689,188 reviews, 192,403 users): each user gives 2 samples (positive +
# negative) per target; train k = 1..n-3, valid n-1, test n. MovieLens-20M: every one of the
# 20,000,263 ratings is a sample; users split 100,000 train (10% of them valid) / 38,493 test,
# so samples are taken in proportion to users (the real split depends on each user's count).
TARGETS = {
    "amazon-electronics": {"proxy": "amazon-beauty", "items": 63_001, "categories": 801,
                           "train": 2 * (1_689_188 - 3 * 192_403), "valid": 2 * 192_403, "test": 2 * 192_403},
    "movielens-20m": {"proxy": "movielens-latest-small", "items": 27_278, "categories": 20,
                      "train": round(20_000_263 * 90_000 / 138_493), "valid": round(20_000_263 * 10_000 / 138_493),
                      "test": round(20_000_263 * 38_493 / 138_493)},
}
GPU_FACTOR = np.array([1.0, 2.0])  # ASSUMED: GPU step time = CPU per-step floor x this (low, high)


def prepare(data: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "dinbench.cli"]
    if not contract.is_prepared(data, "amazon-beauty"):
        subprocess.run([*cli, "import", str(SHARED / "amazon-beauty" / "interactions.csv"), "--name", "amazon-beauty",
                        "--data-dir", str(data)], check=True, env=env, capture_output=True)
    if not contract.is_prepared(data, "movielens-latest-small"):
        subprocess.run([*cli, "download", "movielens-latest-small", "--from", str(SHARED / "ml-latest-small"),
                        "--data-dir", str(data)], check=True, env=env, capture_output=True)


def _steps(model, batches, lr: float) -> float:
    """Seconds per training step (forward, backward, Adam) over ``batches``, after 3 warm-up steps."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()

    def step(batch):
        logits, _ = model(batch)
        loss = loss_fn(logits, batch.label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for batch in batches[:3]:
        step(batch)
    t = time.perf_counter()
    for batch in batches[3:]:
        step(batch)
    return (time.perf_counter() - t) / len(batches[3:])


def _tiny_ids(batch, n: int):
    """The same batch with every id folded into 1..n-1 (for a model with n-row tables)."""
    fold = lambda t: None if t is None else torch.where(t > 0, t % (n - 1) + 1, t)  # noqa: E731 - keeps padding 0
    return type(batch)(**{**batch.__dict__, **{k: fold(getattr(batch, k)) for k in
                                               ("item", "category", "hist_item", "hist_category", "packed_item",
                                                "packed_category")}})


def measure(prepared, spec: str, target: dict, steps: int = 60) -> dict[str, float]:
    """Timings of ``spec`` at default settings on batches of the stand-in dataset ``prepared``:

    step_target: one 256-row training step of a model whose tables have the TARGET's item and
                 category counts (Adam updates whole tables: the step grows with them);
    gather: building one 256-row training batch (the data path);
    score_rows_s: scoring rows/s (forward in 4096-row batches, data path included);
    floor_step / floor_score: a training step / a scoring pass on 8 rows with 64-row tables:
                 the fixed cost per step (Python, autograd, operator dispatch).
    """
    cfg = RunConfig(dataset=prepared.name, pooler=spec)
    store = make_store(prepared)
    train = store.samples(prepared.splits["train"], cfg.max_len)
    test = store.samples(prepared.splits["test"], cfg.max_len)
    idx = batch_indices(len(train), cfg.batch_size, np.random.default_rng(0))[: steps + 3]
    t = time.perf_counter()
    padded = build_model(cfg, prepared).needs_padded  # what training asks the store for
    batches = [store.batch(train, i, padded=padded) for i in idx]
    gather = (time.perf_counter() - t) / len(batches)
    torch.manual_seed(0)
    sized = type("Sized", (), {"n_items": max(target["items"], prepared.n_items),
                               "n_categories": max(target["categories"], prepared.n_categories)})()
    step_target = _steps(build_model(cfg, sized), batches, cfg.lr)
    model = build_model(cfg, prepared)
    t = time.perf_counter()
    predict(model, store, test, cfg.eval_batch_size, torch.device("cpu"))
    score_rows_s = len(test) / (time.perf_counter() - t)
    small = type("Small", (), {"n_items": 64, "n_categories": 64})()
    tiny = [_tiny_ids(b, 64) for b in (store.batch(train, i[:8], padded=padded) for i in idx)]
    floor_model = build_model(cfg, small)
    floor_step = _steps(floor_model, tiny, cfg.lr)
    floor_model.eval()
    t = time.perf_counter()
    with torch.inference_mode():
        for batch in tiny:
            floor_model(batch)
    floor_score = (time.perf_counter() - t) / len(tiny)
    return dict(step_target=step_target, gather=gather, score_rows_s=score_rows_s,
                floor_step=floor_step, floor_score=floor_score)


def check_against_fit(prepared, spec: str) -> tuple[float, float]:
    """(rows/s of one real epoch of fit, rows/s predicted by the step timings at the stand-in's table sizes)."""
    cfg = RunConfig(dataset=prepared.name, pooler=spec, epochs=1)
    real = fit(cfg, prepared).train_rows_per_s
    m = measure(prepared, spec, {"items": prepared.n_items, "categories": prepared.n_categories})
    return real, cfg.batch_size / (m["step_target"] + m["gather"])


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", default="all", help="pooler specs to measure (default: all, as --pooler all)")
    ap.add_argument("--epochs-per-run", type=float, default=7.0)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cores", type=int, default=32, help="cores of the CPU box to extrapolate to")
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "dinbench-scaling-data")
    args = ap.parse_args()
    torch.set_num_threads(1)
    prepare(args.data_dir)
    specs = poolers.expand(args.specs)
    print(f"load before: {os.getloadavg()[0]:.2f}; torch threads 1; specs: {', '.join(specs)}")
    E = args.epochs_per_run
    for target, sizes in TARGETS.items():
        prepared = contract.load(args.data_dir, sizes["proxy"])
        c = prepared.manifest["counts"]
        cfg = RunConfig(dataset=prepared.name)
        print(f"\n{sizes['proxy']} (stand-in for {target}): {c['train_samples']:,} train / {c['valid_samples']:,} valid / "
              f"{c['test_samples']:,} test samples, {prepared.n_items:,} items; {target}: {sizes['items']:,} items, "
              f"{sizes['categories']:,} categories")
        for spec in ("average", "din:softmax"):
            real, modelled = check_against_fit(prepared, spec)
            print(f"  check {spec}: one real epoch {real:,.0f} rows/s; step timings predict {modelled:,.0f} rows/s")
        print(f"  {'pooler':<18} {'train rows/s':>12} {'scored rows/s':>13} {'step floor':>10} {'score floor':>11}"
              f"   one {target} run (extrapolated): 1 core / 1 GPU")
        n_tr, n_va, n_te = sizes["train"], sizes["valid"], sizes["test"]
        cpu_total, gpu_total = 0.0, np.zeros(2)
        for spec in specs:
            m = measure(prepared, spec, sizes)
            r_train = cfg.batch_size / (m["step_target"] + m["gather"])  # at the target's table sizes
            scored = E * n_va + n_te
            run_s = E * n_tr / r_train + scored / m["score_rows_s"]
            cpu_total += run_s * args.seeds
            steps, eval_batches = E * n_tr / cfg.batch_size, scored / cfg.eval_batch_size
            data_path = (steps + scored / cfg.batch_size) * m["gather"]  # scoring gathers about as fast per row
            gpu = data_path + (steps * m["floor_step"] + eval_batches * m["floor_score"]) * GPU_FACTOR
            gpu_total += gpu * args.seeds
            print(f"  {spec:<18} {r_train:>12,.0f} {m['score_rows_s']:>13,.0f} {m['floor_step'] * 1e3:>8.2f}ms "
                  f"{m['floor_score'] * 1e3:>9.2f}ms   {hours(run_s)} / {hours(gpu[0])}-{hours(gpu[1])}")
        runs = len(specs) * args.seeds
        print(f"  EXTRAPOLATED {target} grid: {len(specs)} specs x {args.seeds} seeds = {runs} runs, "
              f"{n_tr:,} train / {n_va:,} valid / {n_te:,} test samples, {E:g} epochs per run:")
        print(f"    1 CPU core, sequential        {hours(cpu_total)}")
        print(f"    1 CPU box, {args.cores} cores (sweep)   {hours(cpu_total / args.cores)}")
        print(f"    1 GPU (floor x 1 to 2)        {hours(gpu_total[0])} - {hours(gpu_total[1])}")
        print(f"    8 GPUs (sweep, 1 run per GPU) {hours(gpu_total[0] / 8)} - {hours(gpu_total[1] / 8)}")
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
