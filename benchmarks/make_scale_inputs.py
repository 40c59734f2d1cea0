"""Write synthetic MovieLens-20M and Taobao UserBehavior inputs of the real sizes, in the real file layouts.

    python benchmarks/make_scale_inputs.py movielens OUT_DIR [--fraction 1.0] [--seed 0]
    python benchmarks/make_scale_inputs.py taobao OUT_DIR [--rows 100150807] [--seed 0]

``movielens`` writes ``OUT_DIR/ml-20m/ratings.csv`` (header ``userId,movieId,rating,timestamp``;
at fraction 1: 20,000,263 ratings by 138,493 users, each at least 20, sorted by user then movie as
GroupLens sorts it, ratings 0.5-5.0 in halves, half of them >= 4, Unix seconds 1995-2015) and
``OUT_DIR/ml-20m/movies.csv`` (``movieId,title,genres``: 27,278 movies with sparse ids up to
131,262, titles with a year and some with commas (quoted), 1-4 of the 20 GroupLens genres each).
Movie popularity is Zipf-like; a user's movies are drawn independently, so a (user, movie) pair
can repeat, which the real file never does (the parser and the rating protocol do not depend on it).

``taobao`` writes ``OUT_DIR/UserBehavior.csv`` (no header, ``user_id,item_id,category_id,
behavior_type,timestamp``): ``--rows`` behaviours (default the real 100,150,807), users, items and
categories in the real proportions (987,994 users, 4,162,024 items, 9,439 categories per 100,150,807
rows), pv/cart/fav/buy at 89.5/5.5/3.0/2.0 %, times 2017-11-25 to 2017-12-03, every item in one
fixed category, rows grouped by user in time order. A smaller ``--rows`` scales every count with it
(a Taobao-shaped fraction, for measuring how preparation grows).

Both are seeded (the same arguments write the same bytes) and stream to disk in blocks of users:
memory stays at one block plus the per-item tables, whatever the size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ML = dict(ratings=20_000_263, users=138_493, movies=27_278, max_movie_id=131_262, min_per_user=20)
ML_GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
             "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
TAOBAO = dict(rows=100_150_807, users=987_994, items=4_162_024, categories=9_439)
TAOBAO_TYPES = (("pv", 0.895), ("cart", 0.055), ("fav", 0.030), ("buy", 0.020))
TAOBAO_START, TAOBAO_END = 1_511_568_000, 1_512_316_799  # 2017-11-25 00:00 to 2017-12-03 23:59:59 (UTC+8)
RATING_TEXT = np.array([f"{k / 2:.1f}" for k in range(1, 11)], dtype=object)  # 0.5 .. 5.0, as GroupLens writes them
BLOCK_ROWS = 2_000_000


def lengths(rng: np.random.Generator, users: int, total: int, minimum: int) -> np.ndarray:
    """Per-user counts: minimum + a geometric tail, summing exactly to ``total``."""
    extra = rng.geometric(1.0 / max(total / users - minimum + 1.0, 1.0), size=users) - 1
    extra = np.floor(extra * (total - minimum * users) / max(extra.sum(), 1)).astype(np.int64)
    extra[: total - minimum * users - extra.sum()] += 1
    out = minimum + extra
    assert out.sum() == total and out.min() >= minimum
    return out


def skewed(rng: np.random.Generator, n: int, size: int, power: float = 3.0) -> np.ndarray:
    """Ranks 0..n-1, popular ranks (small) far more often: floor(n * u ** power)."""
    return np.minimum((n * rng.random(size) ** power).astype(np.int64), n - 1)


def blocks(counts: np.ndarray):
    """(first user index, last user index + 1) of consecutive users holding about BLOCK_ROWS rows."""
    ends = np.cumsum(counts)
    lo = 0
    while lo < len(counts):
        hi = int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + BLOCK_ROWS, side="right"))
        hi = max(hi, lo + 1)
        yield lo, hi
        lo = hi


def write_movielens(out: Path, fraction: float, seed: int) -> None:
    n_ratings, n_users = int(ML["ratings"] * fraction), int(ML["users"] * fraction)
    n_movies = max(int(ML["movies"] * min(1.0, fraction ** 0.5)), 100)
    rng = np.random.default_rng(seed)
    folder = out / "ml-20m"
    folder.mkdir(parents=True, exist_ok=True)
    movie_ids = np.sort(rng.choice(np.arange(1, ML["max_movie_id"] + 1), size=n_movies, replace=False))
    with open(folder / "movies.csv", "w", encoding="utf-8", newline="\n") as f:
        f.write("movieId,title,genres\n")
        for k, movie in enumerate(movie_ids):
            year = 1920 + int(rng.integers(0, 96))
            title = f'"Movie {movie}, The ({year})"' if k % 7 == 0 else f"Movie {movie} ({year})"
            genres = "|".join(sorted(rng.choice(ML_GENRES, size=int(rng.integers(1, 5)), replace=False)))
            f.write(f"{movie},{title},{genres if k % 500 else '(no genres listed)'}\n")
    popularity = rng.permutation(n_movies)  # rank -> movie index
    counts = lengths(rng, n_users, n_ratings, ML["min_per_user"])
    halves = np.arange(1, 11) / 2
    p_rating = np.array([0.011, 0.034, 0.016, 0.071, 0.044, 0.213, 0.111, 0.278, 0.076, 0.146])
    with open(folder / "ratings.csv", "w", encoding="utf-8", newline="\n") as f:
        f.write("userId,movieId,rating,timestamp\n")
        for lo, hi in blocks(counts):
            n = int(counts[lo:hi].sum())
            user = np.repeat(np.arange(lo + 1, hi + 1), counts[lo:hi])
            movie = movie_ids[popularity[skewed(rng, n_movies, n)]]
            order = np.lexsort((movie, user))  # GroupLens' order: user, then movie id
            rating = RATING_TEXT[rng.choice(len(halves), size=n, p=p_rating / p_rating.sum())]
            stamp = rng.integers(789_652_009, 1_427_784_002, size=n)
            _write_rows(f, [user[order], movie[order], rating, stamp])
    print(f"ml-20m: {n_ratings:,} ratings by {n_users:,} users of {n_movies:,} movies in {folder}", file=sys.stderr)


def write_taobao(out: Path, rows: int, seed: int) -> None:
    scale = rows / TAOBAO["rows"]
    n_users, n_items = max(int(TAOBAO["users"] * scale), 10), max(int(TAOBAO["items"] * scale), 100)
    n_cats = max(int(TAOBAO["categories"] * scale), 10)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    user_ids = np.sort(rng.choice(np.arange(1, int(n_users * 1.03) + 2), size=n_users, replace=False))
    item_ids = rng.permutation(np.arange(1, int(n_items * 1.24) + 2))[:n_items]  # rank -> sparse item id
    cat_ids = np.sort(rng.choice(np.arange(1, 5_162_430), size=n_cats, replace=False))
    item_cat = cat_ids[skewed(rng, n_cats, n_items, 2.0)]  # every item in one category, some categories large
    counts = lengths(rng, n_users, rows, 1)
    types = np.array([t for t, _ in TAOBAO_TYPES])
    p_type = np.array([p for _, p in TAOBAO_TYPES])
    with open(out / "UserBehavior.csv", "w", encoding="ascii", newline="\n") as f:
        for lo, hi in blocks(counts):
            n = int(counts[lo:hi].sum())
            user = np.repeat(user_ids[lo:hi], counts[lo:hi])
            rank = skewed(rng, n_items, n)
            stamp = rng.integers(TAOBAO_START, TAOBAO_END + 1, size=n)
            order = np.lexsort((stamp, user))
            rank = rank[order]
            kind = types[rng.choice(len(types), size=n, p=p_type)]
            _write_rows(f, [user, item_ids[rank], item_cat[rank], kind, stamp[order]])
    print(f"UserBehavior.csv: {rows:,} rows, {n_users:,} users, {n_items:,} items, {n_cats:,} categories in {out}",
          file=sys.stderr)


def _write_rows(f, columns: list[np.ndarray]) -> None:
    """Append one block of rows as CSV text (pandas' writer: a block at a time, never the whole file)."""
    import pandas as pd

    frame = pd.DataFrame({str(k): c for k, c in enumerate(columns)})
    frame.to_csv(f, header=False, index=False, lineterminator="\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=("movielens", "taobao"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--fraction", type=float, default=1.0, help="movielens: scale ratings and users (movies by its root)")
    ap.add_argument("--rows", type=int, default=TAOBAO["rows"], help="taobao: behaviours to write")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    started = time.time()
    if args.kind == "movielens":
        write_movielens(args.out, args.fraction, args.seed)
    else:
        write_taobao(args.out, args.rows, args.seed)
    print(f"written in {time.time() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
