"""Catalogue size: training rows/s of `average` and `din` as the item table grows from 10k to 4 M items.

    python benchmarks/catalogue.py [--items 10000,100000,1000000,2000000,4000000] [--poolers average,din]
                                   [--optimizer NAME] [--compile MODE] [--device DEV] [--threads 1] [--batch-size 1024]
                                   [--repeats 3 | --interleave 20] [--graph-masked]

What is measured: the same 200,000 behaviours of 20,000 users (seeded lengths, at least 4 and 10 on
average; the same users, lengths and times at every size) with items drawn uniformly from a catalogue
of N items (categories: item mod 100), prepared in memory under the DIN protocol (one uniform
negative per positive, as ``dinbench.prepared.protocol.din_samples`` makes them) with an item table
of all N items, so the model's item embedding has N + 1 rows whatever the behaviours touch. One
epoch of ``dinbench.train.fit`` (``--protocol paper``: train + valid, no validation pass), batch
1,024, one torch thread; rows/s is the loop's own figure (``Fitted.train_rows_per_s``, batch
building included). Every (pooler, size) trains in its own child process, which also reports its
peak RSS.

Printed: each rate, and its ratio to the same pooler's rate at the smallest catalogue (target: at
least 0.85 at 2 M and 4 M items).

``--interleave K``: one process per pooler holds a trainer at every size and trains them in turn, K
steps each on the same batch rows, over one epoch; the ratio is the median over those rounds of
each size's rate to the smallest size's in the same round. Slow phases of a shared machine then
fall on every size alike (whole-epoch rates of one size moved by 20-30 % between neighbouring
processes here), at the price of one process's memory for all sizes (no peak RSS per size). Each
size's line also gives the item-table rows a step updates (the distinct items of a batch, median over
its first 20 batches): the larger catalogue repeats fewer items within a batch, so it has more rows
to update as well as rows that no cache holds (docs/performance.md, thirteenth session).

A dense optimizer (``--optimizer adam``) updates every row of the
table at every step, so its rate falls with N; a sparse one updates only the rows a batch touched.
``--optimizer``, ``--compile`` and ``--device`` go to RunConfig unchanged (default: RunConfig's default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peak_rss import REPO, WARMUP_STEPS, effective, run_options, run_overrides, parse_or_serve, time_steps, worker  # noqa: E402

USERS, BEHAVIOURS, CATEGORIES = 20_000, 200_000, 100
TARGET_RATIO = 0.85


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default="10000,100000,1000000,2000000,4000000", help="catalogue sizes, comma-separated")
    ap.add_argument("--poolers", default="average,din")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1,
                    help="measure every (pooler, size) this many times, interleaved (all sizes once, then again), and "
                         "judge the target on the median of each repeat's own ratio: on a shared machine one "
                         "measurement per cell moves by 20-30%% between neighbouring runs")
    ap.add_argument("--interleave", type=int, default=0, metavar="K",
                    help="train every size in one process, K steps each in turn on the same rows, over one "
                         "epoch; judge the median of the per-round ratios (see the docstring)")
    ap.add_argument("--steps", type=int, default=0,
                    help=f"time this many steps (after {WARMUP_STEPS} untimed ones) instead of whole epochs: for dense "
                         "optimizers, whose epochs at millions of items take hours here")
    ap.add_argument("--graph-masked", action="store_true",
                    help="with --compile cuda-graphs: the masked update over the whole table inside the graph "
                         "(dinbench.graph_step.SPARSE_TABLES off) instead of large tables' sparse gradients (the default)")
    run_options(ap, device=True)
    args = parse_or_serve(ap, {"train": work_train, "interleaved": work_interleaved})
    if args is None:  # a measurement child: done
        return

    sys.path.insert(0, str(REPO))
    overrides = run_overrides(args)
    sizes = [int(n) for n in args.items.split(",")]
    poolers = [p.strip() for p in args.poolers.split(",") if p.strip()]
    what = f"{args.steps} steps (after {WARMUP_STEPS} untimed)" if args.steps else f"{args.epochs} epoch(s)"
    load = os.getloadavg()
    print(f"dinbench catalogue benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
          f"torch threads {args.threads}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{BEHAVIOURS:,} behaviours of {USERS:,} users, items uniform over the catalogue, {CATEGORIES} categories; "
          f"{what}, batch {args.batch_size:,}, optimizer {effective(overrides, 'optimizer')}"
          + (f", compile {overrides['compile']}" if overrides.get("compile") else "")
          + (", the masked update over whole tables inside the graph" if args.graph_masked else "") + "\n")
    if args.interleave:
        interleaved(args, sizes, poolers, overrides)
        return
    rates: dict[tuple[str, int, int], dict] = {}  # (pooler, items, repeat) -> the child's figures
    for rep in range(args.repeats):
        for pooler in poolers:
            for n in sizes:
                job = dict(items=n, pooler=pooler, threads=args.threads, batch_size=args.batch_size,
                           epochs=args.epochs, steps=args.steps, overrides=overrides, graph_masked=args.graph_masked)
                r = worker(__file__, "train", job)
                rates[pooler, n, rep] = r
                base = rates[pooler, sizes[0], rep]["rows_per_s"]
                print(f"  {'' if args.repeats == 1 else f'repeat {rep + 1}: '}{pooler} at {n:>9,} items: "
                      f"{r['rows_per_s']:>9,.0f} rows/s ({r['rows_per_s'] / base:.2f}x of {sizes[0]:,}), "
                      f"{r['train_rows']:,} rows in {r['train_seconds']:.1f} s, peak RSS {r['peak_rss_mb']:,.0f} MB",
                      flush=True)

    def rate(pooler: str, n: int) -> float:  # median over repeats
        return float(statistics.median(rates[pooler, n, rep]["rows_per_s"] for rep in range(args.repeats)))

    def ratios(pooler: str, n: int) -> list[float]:  # each repeat's ratio to its own smallest-catalogue rate
        return sorted(rates[pooler, n, rep]["rows_per_s"] / rates[pooler, sizes[0], rep]["rows_per_s"]
                      for rep in range(args.repeats))

    print("\n| pooler | " + " | ".join(f"{n:,} items" for n in sizes) + " |"
          + ("" if args.repeats == 1 else f"   (median rows/s of {args.repeats} repeats, median ratio)"))
    print("|---|" + "---|" * len(sizes))
    for pooler in poolers:
        cells = [f"{rate(pooler, n):,.0f} ({statistics.median(ratios(pooler, n)):.2f}x)" for n in sizes]
        print(f"| {pooler} | " + " | ".join(cells) + " |")
    print(f"\nratio to the {sizes[0]:,}-item rate, target >= {TARGET_RATIO} at 2,000,000 and 4,000,000 items"
          + ("" if args.repeats == 1 else " (median of the repeats' ratios; their range in brackets)") + ":")
    for pooler in poolers:
        for n in (n for n in sizes if n >= 2_000_000):
            each = ratios(pooler, n)
            ratio = statistics.median(each)
            spread = "" if args.repeats == 1 else f" [{each[0]:.2f}-{each[-1]:.2f}]"
            print(f"  {pooler} at {n:,}: {ratio:.3f}{spread} ({'met' if ratio >= TARGET_RATIO else 'missed'})")
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def interleaved(args, sizes: list[int], poolers: list[str], overrides: dict) -> None:
    """--interleave: per pooler, one child trains every size in turn; the per-round ratios' median."""
    print(f"interleaved: every size in one process per pooler, {args.interleave} steps each in turn on the same rows\n")
    verdicts = []
    for pooler in poolers:
        job = dict(sizes=sizes, pooler=pooler, threads=args.threads, batch_size=args.batch_size,
                   block=args.interleave, overrides=overrides, graph_masked=args.graph_masked)
        r = worker(__file__, "interleaved", job)
        seconds = {int(n): v for n, v in r["seconds"].items()}  # size -> [round] seconds (same rows in a round)
        rows = r["rows_per_round"]
        distinct = {int(n): v for n, v in r["distinct_rows"].items()}
        cells = []
        for n in sizes:
            each = sorted(b / a for a, b in zip(seconds[n], seconds[sizes[0]]))  # rate(n) / rate(smallest)
            ratio = statistics.median(each)
            rate = statistics.median(rows / t for t in seconds[n])
            cells.append(f"{rate:,.0f} ({ratio:.2f}x; {distinct[n]:,.0f} item rows a step)")
            if n >= 2_000_000:
                verdicts.append(f"  {pooler} at {n:,}: {ratio:.3f} [{each[0]:.2f}-{each[-1]:.2f}] "
                                f"({'met' if ratio >= TARGET_RATIO else 'missed'})")
        print(f"  {pooler}: " + ", ".join(f"{n:,} items {c}" for n, c in zip(sizes, cells))
              + f"; {len(seconds[sizes[0]])} rounds of {rows:,} rows, peak RSS of the process {r['peak_rss_mb']:,.0f} MB",
              flush=True)
    print(f"\nratio to the {sizes[0]:,}-item rate, target >= {TARGET_RATIO} at 2,000,000 and 4,000,000 items "
          "(median of the rounds' ratios; their range in brackets):")
    print("\n".join(verdicts))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def work_interleaved(job: dict) -> dict:
    """Trainers at every size in this process; one epoch's batches, ``block`` steps per size in turn
    (the order rotates each round); the first round is a warm-up and is dropped."""
    from dinbench.config import RunConfig
    from dinbench.runtime import LocalRuntime, set_threads
    from dinbench.train import Trainer, TrainState

    set_threads(job["threads"])
    graph_masked(job)
    trainers = {}
    for n in job["sizes"]:
        prepared = catalogue_dataset(n)
        cfg = RunConfig(dataset=prepared.name, pooler=job["pooler"], protocol="paper", epochs=1,
                        batch_size=job["batch_size"], **job["overrides"])
        trainers[n] = Trainer(cfg, prepared, LocalRuntime())
        trainers[n].learner.net.train()
    first = trainers[job["sizes"][0]]
    batches = [b for b in first.batches(TrainState()) if len(b) == job["batch_size"]]  # the same rows at every size
    distinct = {n: distinct_item_rows(trainers[n], batches[:DISTINCT_BATCHES]) for n in job["sizes"]}  # not timed
    k, sizes = job["block"], list(job["sizes"])
    seconds: dict[int, list[float]] = {n: [] for n in sizes}
    for r in range(len(batches) // k):
        rows = batches[r * k:(r + 1) * k]
        for n in sizes[r % len(sizes):] + sizes[:r % len(sizes)]:
            t0 = time.perf_counter()
            for b in rows:
                trainers[n].step(trainers[n].data.store.rows(b))[0].item()  # host and device indices, as the loop
            if r > 0:
                seconds[n].append(time.perf_counter() - t0)
    return dict(seconds=seconds, rows_per_round=k * job["batch_size"], distinct_rows=distinct)


DISTINCT_BATCHES = 20


def distinct_item_rows(trainer, batches: list) -> float:
    """Median over ``batches`` of the item-table rows a step updates (the distinct items a batch looks up,
    candidates and histories): a larger catalogue repeats fewer items within a batch, so the row-sparse
    optimizer has more rows to update, whatever the memory they sit in."""
    import numpy as np
    import torch

    store, train = trainer.data.store, trainer.data.train
    counts = []
    for b in batches:
        batch = store.batch(train, store.rows(b), padded=False)
        counts.append(len(np.unique(torch.cat([batch.item, batch.packed_item]).cpu().numpy())))
    return float(statistics.median(counts))


def graph_masked(job: dict) -> None:
    """--graph-masked, in the measuring child: the masked update over whole tables inside a captured step."""
    if job.get("graph_masked"):
        from dinbench import graph_step

        graph_step.SPARSE_TABLES = False


def catalogue_dataset(n_items: int, users: int = USERS, behaviours: int = BEHAVIOURS, categories: int = CATEGORIES,
                      seed: int = 0):
    """A prepared dataset in memory (``dinbench.prepared.Prepared``) whose item table has ``n_items`` rows.

    User lengths, order and times come from the seed alone (the same at every catalogue size); items are
    uniform over 1..n_items; the samples are the DIN protocol's (``din_samples``, negative seed 1234).
    """
    import numpy as np
    import pandas as pd

    from dinbench.prepared.contract import Prepared
    from dinbench.prepared.protocol import din_samples

    rng = np.random.default_rng(seed)
    extra = rng.geometric(1.0 / (behaviours / users - 3.0), size=users) - 1  # lengths 4 + geometric, summing exactly
    extra = np.floor(extra * (behaviours - 4 * users) / max(extra.sum(), 1)).astype(np.int64)
    extra[: behaviours - 4 * users - extra.sum()] += 1
    lengths = 4 + extra
    user = np.repeat(np.arange(1, users + 1, dtype=np.int32), lengths)
    time_ = 1_500_000_000 + np.arange(behaviours, dtype=np.int64) * 60
    item = np.random.default_rng([seed, n_items]).integers(1, n_items + 1, size=behaviours).astype(np.int32)
    item_category = np.concatenate([[0], np.arange(n_items) % categories + 1]).astype(np.int32)
    splits = din_samples(user, item, item_category, users, n_items)
    counts = {"users": users, "items": n_items, "categories": categories, "behaviours": behaviours,
              **{f"{s}_samples": len(f) for s, f in splits.items()}}
    return Prepared(
        name=f"catalogue-{n_items}", path=Path("."),
        manifest={"counts": counts, "fingerprint": f"catalogue-{n_items}-seed{seed}", "time_unit": "seconds", "source": {}},
        behaviours=pd.DataFrame({"user": user, "item": item, "category": item_category[item], "time": time_}),
        items=pd.DataFrame({"item": np.arange(1, n_items + 1, dtype=np.int32), "category": item_category[1:]}),
        users=pd.DataFrame({"user": np.arange(1, users + 1, dtype=np.int32)}),
        splits=splits,
    )


def work_train(job: dict) -> dict:
    """One epoch of dinbench.train.fit on the catalogue of ``job['items']``; its rows/s."""
    from dinbench.config import RunConfig
    from dinbench.runtime import set_threads
    from dinbench.train import fit

    set_threads(job["threads"])
    graph_masked(job)
    prepared = catalogue_dataset(job["items"])
    cfg = RunConfig(dataset=prepared.name, pooler=job["pooler"], protocol="paper", epochs=job["epochs"],
                    batch_size=job["batch_size"], **job["overrides"])
    if not job.get("steps"):
        fitted = fit(cfg, prepared)
        return dict(rows_per_s=fitted.train_rows_per_s, train_rows=fitted.train_rows * job["epochs"],
                    train_seconds=sum(e["train_seconds"] for e in fitted.history))
    return time_steps(cfg, prepared, job["steps"])


if __name__ == "__main__":
    main()
