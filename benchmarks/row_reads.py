"""Random row reads from a large embedding table: the memory cost under the catalogue ratio.

    python benchmarks/row_reads.py [--items 4000000] [--rows 8000] [--dim 32] [--threads 1]

A row-sparse optimizer step at a large catalogue reads each touched row's weight (the forward's
lookup) and both Adam moments (the update) from tables that no cache holds, at random places. This
prints what such reads cost on this machine: ``--rows`` sorted random rows (a batch's distinct items)
gathered with ``index_select`` from

- one [items, dim] table; three of them (a weight and two moments, each apart); a weight and one
  [items, 2 dim] table of both moments side by side (as dinbench keeps them: ``optim.RowSparse``);
  and one [items, 3 dim] table holding all three side by side (one read per row);
- a table of 10,000 rows, which the caches hold, for contrast;

every large table in huge pages (``dinbench.hugepages``), as dinbench allocates them. Figures: ms per
gather and ns per 64-byte line read, medians of alternating rounds (docs/performance.md, thirteenth
session: 37-44 ns a line on a 2-core AMD EPYC, ~1.8 ms of a 4 M-item step).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINE = 64  # bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=4_000_000, help="rows of the large tables")
    ap.add_argument("--rows", type=int, default=8_000, help="distinct rows read per gather (a batch's items)")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import torch

    from dinbench import hugepages

    torch.set_num_threads(args.threads)
    n, d = args.items, args.dim
    print(f"random row reads: {args.rows:,} sorted rows of {d} floats, tables of {n:,} rows in huge pages "
          f"({3 * n * d * 4 / 2**20:,.0f} MB for three), torch threads {args.threads}", flush=True)
    tables = [hugepages.empty((n, d)).normal_() for _ in range(3)]
    moments = hugepages.empty((n, 2 * d)).normal_()
    joint = hugepages.empty((n, 3 * d)).normal_()
    small = torch.randn(10_000, d)
    gen = torch.Generator().manual_seed(0)
    sets = [torch.randperm(n - 1, generator=gen)[:args.rows].add_(1).sort().values for _ in range(30)]
    small_sets = [torch.randint(1, 10_000, (args.rows,), generator=gen).sort().values for _ in range(30)]
    row_bytes = d * 4
    cases = {  # name -> (one gather over a set of rows, the row-set list, lines read per gather)
        "one table": (lambda r: tables[0].index_select(0, r), sets, args.rows * row_bytes / LINE),
        "three tables": (lambda r: [t.index_select(0, r) for t in tables], sets, 3 * args.rows * row_bytes / LINE),
        "weight + moments side by side": (lambda r: [tables[0].index_select(0, r), moments.index_select(0, r)], sets,
                                          3 * args.rows * row_bytes / LINE),
        "all three side by side": (lambda r: joint.index_select(0, r), sets, 3 * args.rows * row_bytes / LINE),
        "one cached table (10,000 rows)": (lambda r: small.index_select(0, r), small_sets, args.rows * row_bytes / LINE),
    }
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            gather, row_sets, _ = cases[name]
            t0 = time.perf_counter()
            for rows in row_sets:
                gather(rows)
            seconds[name].append((time.perf_counter() - t0) / len(row_sets))
    for name, (_, _, lines) in cases.items():
        s = statistics.median(seconds[name][1:])  # the first round warms up
        print(f"  {name:32s} {s * 1e3:7.3f} ms a gather, {s / lines * 1e9:5.1f} ns a 64-byte line")


if __name__ == "__main__":
    main()
