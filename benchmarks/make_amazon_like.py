"""Write a synthetic Amazon 2014 reviews + meta pair of Amazon Electronics' size, in the real format.

    python benchmarks/make_amazon_like.py OUT_DIR [--fraction 1.0] [--seed 0]

At ``--fraction 1`` it writes ``reviews_Electronics_5.json.gz`` with 1,689,188 reviews by
192,403 users (every user at least 5: the 5-core) of 63,001 goods in 801 leaf categories (the DIN
paper's Table 2), and ``meta_Electronics.json.gz`` with 498,196 Python-literal lines (the real meta
file's line count: the reviewed goods plus goods without a 5-core review), each with ``related``
lists, ``salesRank``, ``title``, ``price``, ``imUrl`` and ``categories`` paths, so that reading
it costs what reading the real one costs. Review texts are ~400 characters of filler.
Seeded, so two runs write the same rows. Fractions scale every count.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np

REVIEWS, USERS, GOODS, CATEGORIES, META_LINES = 1_689_188, 192_403, 63_001, 801, 498_196
WORDS = ("works great battery cable sound quality price screen easy setup would recommend bought "
         "this for my laptop after the old one died fits perfectly and charges fast").split()


def asin(i: int) -> str:
    return f"B{i:09d}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    f = args.fraction
    n_rev, n_users, n_goods = int(REVIEWS * f), int(USERS * f), int(GOODS * f)
    n_cats, n_meta = max(2, int(CATEGORIES * min(1.0, f ** 0.5))), int(META_LINES * f)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    # user lengths: 5-core, summing exactly to n_rev
    extra = rng.geometric(1.0 / (n_rev / n_users - 4.0), size=n_users) - 1
    extra = np.floor(extra * (n_rev - 5 * n_users) / max(extra.sum(), 1)).astype(np.int64)
    extra[: n_rev - 5 * n_users - extra.sum()] += 1
    lengths = 5 + extra
    assert lengths.sum() == n_rev and lengths.min() >= 5
    # goods: Zipf-like popularity, every good reviewed at least once
    pop = 1.0 / np.arange(1, n_goods + 1) ** 0.8
    goods = rng.choice(n_goods, size=n_rev, p=pop / pop.sum())
    goods[rng.permutation(n_rev)[:n_goods]] = np.arange(n_goods)
    good_cat = np.concatenate([np.arange(n_cats), rng.integers(0, n_cats, size=n_goods - n_cats)])
    users = np.repeat(np.arange(n_users), lengths)
    times = 1_000_000_000 + rng.integers(0, 400_000_000, size=n_rev)
    text_len = rng.integers(10, 120, size=n_rev)
    filler = " ".join(WORDS * 40)

    with gzip.open(args.out / "reviews_Electronics_5.json.gz", "wt", encoding="utf-8", compresslevel=1) as out:
        for k in range(n_rev):
            u = int(users[k])
            out.write(
                f'{{"reviewerID": "A{u:013d}", "asin": "{asin(int(goods[k]))}", "reviewerName": "Reviewer {u}", '
                f'"helpful": [0, 0], "reviewText": "{filler[: 4 * int(text_len[k])]}", "overall": 5.0, '
                f'"summary": "Good", "unixReviewTime": {int(times[k])}, "reviewTime": "06 2, 2014"}}\n'
            )
    print(f"reviews: {n_rev:,} by {n_users:,} users of {n_goods:,} goods ({time.time() - started:.0f}s)", file=sys.stderr)

    with gzip.open(args.out / "meta_Electronics.json.gz", "wt", encoding="utf-8", compresslevel=1) as out:
        order = rng.permutation(n_meta)  # reviewed and unreviewed goods interleaved, as in the real file
        for k in order:
            k = int(k)
            cat = int(good_cat[k]) if k < n_goods else int(rng.integers(0, n_cats))
            related = {
                "also_bought": [asin(int(x)) for x in rng.integers(0, n_meta, size=30)],
                "also_viewed": [asin(int(x)) for x in rng.integers(0, n_meta, size=15)],
                "bought_together": [asin(int(x)) for x in rng.integers(0, n_meta, size=2)],
            }
            meta = {
                "asin": asin(k), "related": related, "title": f"Product {k} with a descriptive title",
                "price": round(float(rng.random() * 100), 2), "salesRank": {"Electronics": int(rng.integers(1, 10**6))},
                "imUrl": f"http://ecx.images-amazon.com/images/I/{k}.jpg",
                "categories": [["Electronics", "Accessories"], ["Electronics", f"Group {cat % 40}", f"Leaf {cat}"]],
            }
            out.write(repr(meta) + "\n")
    print(f"meta: {n_meta:,} lines, {n_cats:,} leaf categories ({time.time() - started:.0f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()
