"""Hand-made raw files in the exact published layouts of ../shared/formats.md (tiny, deterministic)."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
               "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]

# (user, movie, rating, unix time); user 1 has a tie at t=100 between movies 3 and 2 (ties go by movie id)
RATINGS = [
    (1, 3, 5.0, 100), (1, 2, 3.0, 100), (1, 1, 4.0, 50), (1, 4, 2.0, 300),
    (2, 1, 1.0, 10), (2, 4, 4.0, 20), (2, 2, 5.0, 30),
    (3, 2, 4.0, 5), (3, 3, 2.0, 6),
    (4, 1, 5.0, 7), (4, 4, 3.0, 8), (4, 3, 4.0, 9), (4, 2, 1.0, 10),
]
BASE_TIME = 881_250_949  # 1997: Unix seconds as in the real files
# movie id, title, genres in the published order
MOVIES = [
    (1, "Toy Story (1995)", ["Animation", "Children's", "Comedy"]),
    (2, "GoldenEye (1995)", ["Action", "Adventure", "Thriller"]),
    (3, "Café Society (1995)", ["Drama"]),  # Latin-1 character in the title
    (4, "Unknown Film (1996)", []),
    (5, "Never Rated (1996)", ["Comedy"]),
]


def write_ml100k(folder: Path) -> Path:
    d = folder / "ml-100k"
    d.mkdir(parents=True)
    with open(d / "u.data", "w", encoding="latin-1") as f:
        for u, m, r, t in RATINGS:
            f.write(f"{u}\t{m}\t{int(r)}\t{BASE_TIME + t}\n")
    with open(d / "u.item", "w", encoding="latin-1") as f:
        for m, title, genres in MOVIES:
            flags = "|".join("1" if g in genres else "0" for g in GENRES_100K)
            f.write(f"{m}|{title}|01-Jan-1995||http://us.imdb.com/M/title-exact?x|{flags}\n")
    return d


def write_ml1m(folder: Path) -> Path:
    d = folder / "ml-1m"
    d.mkdir(parents=True)
    with open(d / "ratings.dat", "w", encoding="latin-1") as f:
        for u, m, r, t in RATINGS:
            f.write(f"{u}::{m}::{int(r)}::{BASE_TIME + t}\n")
    with open(d / "movies.dat", "w", encoding="latin-1") as f:
        for m, title, genres in MOVIES:
            f.write(f"{m}::{title}::{'|'.join(g for g in genres) or ''}\n")
    return d


def write_mlcsv(folder: Path, name: str = "ml-latest-small") -> Path:
    d = folder / name
    d.mkdir(parents=True)
    with open(d / "ratings.csv", "w", encoding="utf-8") as f:
        f.write("userId,movieId,rating,timestamp\n")
        for u, m, r, t in RATINGS:
            f.write(f"{u},{m},{r:.1f},{BASE_TIME + t}\n")
    with open(d / "movies.csv", "w", encoding="utf-8") as f:
        f.write("movieId,title,genres\n")
        for m, title, genres in MOVIES:
            title = f'"{title}"' if "," in title else title
            f.write(f"{m},{title},{'|'.join(g.replace(chr(39), '') for g in genres) or '(no genres listed)'}\n")
    return d


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder.parent).as_posix())
    return archive


# Amazon: (reviewerID, asin, unixReviewTime) in file order; user A1 has a time tie (I2 before I3 in the file)
REVIEWS = [
    ("A1", "I1", 1_300_000_300), ("A1", "I2", 1_300_000_100), ("A1", "I3", 1_300_000_100), ("A1", "I4", 1_300_000_000),
    ("A1", "I5", 1_300_000_400),
    ("B2", "I2", 1_200_000_000), ("B2", "I6", 1_200_000_500), ("B2", "I1", 1_200_000_100), ("B2", "I3", 1_200_000_900),
    ("C3", "I4", 1_250_000_000), ("C3", "I5", 1_250_000_100), ("C3", "I6", 1_250_000_200), ("C3", "I7", 1_250_000_300),
    ("C3", "I1", 1_250_000_400),
]
META = {
    "I1": {"asin": "I1", "title": "Cable", "price": 12.99, "categories": [["Electronics", "Computers & Accessories", "Cables & Accessories", "Monitor Accessories"]]},
    "I2": {"asin": "I2", "categories": [["Electronics", "Camera & Photo"], ["Electronics", "Accessories", "Lens Caps"]],
           "related": {"also_bought": ["I1", "I9"]}, "salesRank": {"Electronics": 123}},
    "I3": {"asin": "I3", "title": "It's a \"quoted\" title", "categories": [["Electronics", "Headphones"]], "brand": "Sony"},
    "I4": {"asin": "I4", "categories": [["Electronics", "Headphones"]], "imUrl": "http://ecx.images-amazon.com/images/I/x.jpg"},
    "I5": {"asin": "I5", "categories": [["Electronics", "Computers & Accessories", "Cables & Accessories", "Monitor Accessories"]]},
    "I6": {"asin": "I6", "title": "no categories key"},
    # I7 has no meta line at all; I8 and I9 have meta but no review
    "I8": {"asin": "I8", "categories": [["Electronics", "Unused"]]},
    "I9": {"asin": "I9", "categories": [["Electronics", "Also Unused"]]},
}


def review_line(user: str, asin: str, when: int) -> str:
    return json.dumps({"reviewerID": user, "asin": asin, "reviewerName": "J. Doe", "helpful": [0, 0],
                       "reviewText": "Works as described.", "overall": 5.0, "summary": "Good",
                       "unixReviewTime": when, "reviewTime": "06 2, 2014"})


def write_amazon(folder: Path, category: str = "Electronics", meta_lines: list[str] | None = None,
                 review_lines: list[str] | None = None) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    reviews = folder / f"reviews_{category}_5.json.gz"
    meta = folder / f"meta_{category}.json.gz"
    with gzip.open(reviews, "wt", encoding="utf-8") as f:
        for line in review_lines if review_lines is not None else [review_line(*r) for r in REVIEWS]:
            f.write(line + "\n")
    with gzip.open(meta, "wt", encoding="utf-8") as f:
        for line in meta_lines if meta_lines is not None else [repr(m) for m in META.values()]:
            f.write(line + "\n")
    return reviews, meta
