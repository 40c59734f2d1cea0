"""MovieLens (GroupLens) in its three published layouts, prepared under the DIN paper's protocol.

Layouts (see ``../shared/formats.md``):

* ``100k``: ``u.data`` (tab-separated ``user item rating unix_ts``, no header) and ``u.item``
  (``|``-separated, Latin-1, 5 fields then 19 genre flags in the order of ``u.genre``);
* ``1m``: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat``
  (``MovieID::Title::Genres``, genres ``|``-separated), both Latin-1;
* ``csv`` (ml-20m, ml-25m, ml-latest-small): ``ratings.csv`` (``userId,movieId,rating,timestamp``)
  and ``movies.csv`` (``movieId,title,genres``), UTF-8 with a header.

The protocol (``RatingProtocol``): label = 1 for a rating of 4 or more (4, 4.5, 5), else 0; every
rating is a sample whose history is the user's earlier-rated movies (time order, ties broken by
movie id); users are split at random, 100,000/138,493 of them train as in the paper, a tenth of
those validate, the rest test.

Category = the movie's **first listed genre**. The paper uses "movie genre" as the category
feature but a movie has up to ten genres and the paper does not say which one; the first listed is
deterministic and reproducible (GroupLens lists genres alphabetically in the CSV layouts and in
``u.genre`` order for ml-100k, so it favours e.g. Action/Adventure). All genres are kept in
``items.parquet`` (column ``genres``, ``|``-joined) for later use. Movies without a genre get
``(no genres listed)`` (GroupLens' own label); rated movies missing from the movies file get
``(unknown)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinbench.errors import DinbenchError
from dinbench.prepared import contract
from dinbench.prepared.builders import RatingProtocol

GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
NO_GENRE = "(no genres listed)"
FILES = {"100k": ("u.data", "u.item"), "1m": ("ratings.dat", "movies.dat"), "csv": ("ratings.csv", "movies.csv")}
POSITIVE_RATING = 4.0


def _fail(path: Path, exc: Exception) -> DinbenchError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return DinbenchError(f"cannot parse {path}: {first}; is it the file as GroupLens ships it?")


def _check(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    if frame.empty:
        raise DinbenchError(f"{path} has no ratings")
    if frame.isna().any().any():
        row = int(np.flatnonzero(frame.isna().any(axis=1).to_numpy())[0])
        raise DinbenchError(f"{path}: rating row {row + 1} has a missing or non-numeric field; the file is damaged")
    return frame


def read_ratings(folder: Path, layout: str) -> pd.DataFrame:
    """DataFrame[user int32, item int32, rating float32, time int64], in file order."""
    path = Path(folder) / FILES[layout][0]
    names = ["user", "item", "rating", "time"]
    dtypes = {"user": "int32", "item": "int32", "rating": "float32", "time": "int64"}
    try:
        if layout == "100k":
            frame = pd.read_csv(path, sep="\t", header=None, names=names, dtype=dtypes, engine="c")
        elif layout == "1m":
            # '::' separated: split on ':' with the fast C parser and keep every other field
            frame = pd.read_csv(path, sep=":", header=None, usecols=[0, 2, 4, 6], names=["user", "a", "item", "b", "rating", "c", "time"],
                                dtype={"user": "int32", "item": "int32", "rating": "float32", "time": "int64"},
                                encoding="latin-1", engine="c")[names]
        else:
            frame = pd.read_csv(path, dtype={"userId": "int32", "movieId": "int32", "rating": "float32", "timestamp": "int64"})
            missing = [c for c in ("userId", "movieId", "rating", "timestamp") if c not in frame.columns]
            if missing:
                raise DinbenchError(f"{path} lacks the column(s) {', '.join(missing)}: not a MovieLens ratings.csv")
            frame = frame.rename(columns={"userId": "user", "movieId": "item", "timestamp": "time"})[names]
    except DinbenchError:
        raise
    except (OSError, ValueError, TypeError, OverflowError, pd.errors.ParserError) as exc:  # Overflow: an id beyond 64 bits
        raise _fail(path, exc) from None
    return _check(frame, path)


def read_movies(folder: Path, layout: str) -> pd.DataFrame:
    """DataFrame[item int32, title str, genres str ('|'-joined, in the file's order), category str]."""
    path = Path(folder) / FILES[layout][1]
    rows: list[tuple[int, str, str]] = []
    try:
        if layout == "100k":
            with open(path, encoding="latin-1") as f:
                for number, line in enumerate(f, start=1):
                    fields = line.rstrip("\r\n").split("|")
                    if not line.strip():
                        continue
                    if len(fields) != 5 + len(GENRES_100K) or not fields[0].isdigit():
                        raise DinbenchError(f"{path.name} line {number}: expected {5 + len(GENRES_100K)} '|'-separated fields, got {len(fields)}")
                    flags = fields[5:]
                    genres = [g for g, flag in zip(GENRES_100K, flags) if flag.strip() == "1"]
                    rows.append((int(fields[0]), fields[1], "|".join(genres)))
        elif layout == "1m":
            with open(path, encoding="latin-1") as f:
                for number, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    fields = line.rstrip("\r\n").split("::")
                    if len(fields) != 3 or not fields[0].isdigit():
                        raise DinbenchError(f"{path.name} line {number}: expected MovieID::Title::Genres")
                    rows.append((int(fields[0]), fields[1], fields[2]))
        else:
            frame = pd.read_csv(path, dtype={"movieId": "int32", "title": "string", "genres": "string"}, keep_default_na=False)
            if list(frame.columns[:3]) != ["movieId", "title", "genres"]:
                raise DinbenchError(f"{path} does not start with the columns movieId,title,genres")
            rows = list(zip(frame["movieId"].tolist(), frame["title"].tolist(), frame["genres"].tolist()))
    except DinbenchError:
        raise
    except (OSError, ValueError, TypeError, OverflowError, pd.errors.ParserError) as exc:  # Overflow: an id beyond 64 bits
        raise _fail(path, exc) from None
    movies = pd.DataFrame(rows, columns=["item", "title", "genres"])
    too_big = [m for m in movies["item"].tolist() if m > np.iinfo(np.int32).max]
    if too_big:
        raise DinbenchError(f"{path}: movie id {too_big[0]} is too large (the file is damaged)")
    movies["item"] = movies["item"].astype(np.int32)
    movies["genres"] = movies["genres"].replace({"": NO_GENRE})
    movies["category"] = movies["genres"].str.split("|", n=1).str[0]
    if movies["item"].duplicated().any():
        dup = int(movies.loc[movies["item"].duplicated(), "item"].iloc[0])
        raise DinbenchError(f"{path} lists movie {dup} twice; the file is damaged")
    return movies


def find_folder(path: Path, layout: str) -> Path | None:
    """The folder under ``path`` (itself or one level down) that holds both files of ``layout``."""
    path = Path(path)
    for candidate in (path, *sorted(p for p in path.iterdir() if p.is_dir())) if path.is_dir() else ():
        if all((candidate / f).is_file() for f in FILES[layout]):
            return candidate
    return None


def behaviours(folder: Path, layout: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw behaviours (user, item, category, time, rating, label) sorted by user, time, movie id; and the movies."""
    ratings = read_ratings(folder, layout)
    movies = read_movies(folder, layout)
    ratings = ratings.sort_values(["user", "time", "item"], kind="stable").reset_index(drop=True)
    category = movies.set_index("item")["category"]
    raw = pd.DataFrame(
        {
            "user": ratings["user"].to_numpy(),
            "item": ratings["item"].to_numpy(),
            "category": category.reindex(ratings["item"].to_numpy()).fillna(contract.UNKNOWN_CATEGORY).to_numpy(),
            "time": ratings["time"].to_numpy(),
            "rating": ratings["rating"].to_numpy(),
            "label": (ratings["rating"].to_numpy() >= POSITIVE_RATING).astype(np.int8),
        }
    )
    return raw, movies


def prepare(
    folder: Path,
    layout: str,
    name: str,
    data_dir: Path,
    source: dict[str, Any],
    seed: int = 1234,
    valid_fraction: float = 0.1,
) -> dict[str, Any]:
    raw, movies = behaviours(folder, layout)
    rated = movies[movies["item"].isin(np.unique(raw["item"].to_numpy()))]
    attrs = pd.DataFrame({"item": rated["item"], "title": rated["title"].astype(str), "genres": rated["genres"].astype(str)})
    builder = RatingProtocol(seed=seed, valid_fraction=valid_fraction)
    source = {**source, "layout": layout, "category_rule": "first listed genre (all genres in items.parquet 'genres')",
              "label_rule": f"rating >= {POSITIVE_RATING:g}", "movies_without_ratings": int(len(movies) - len(rated)),
              "unrated_or_unknown_movies": int((raw["category"] == contract.UNKNOWN_CATEGORY).sum())}
    return contract.prepare(raw, name, data_dir, source, item_attributes=attrs, builder=builder, behaviour_columns=("rating",))
