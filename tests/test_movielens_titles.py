"""MovieLens titles outside ASCII: ml-100k ``u.item`` and ml-1m ``movies.dat`` are Latin-1, the CSV
layouts (ml-latest-small, ml-20m, ml-25m) are UTF-8. Titles must come through intact, in
``read_movies`` and in the prepared ``items.parquet`` (column ``title``), with the genres right."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinbench.prepared import contract
from dinbench.sources import movielens
from real_fixtures import GENRES_100K, RATINGS

BASE_TIME = 881_250_949
LATIN1_MOVIES = [  # every character is in Latin-1
    (1, "Misérables, Les (1995)", ["Drama", "War"]),
    (2, "Cité des enfants perdus, La (City of Lost Children, The) (1995)", ["Adventure", "Sci-Fi"]),
    (3, "Bälle, Ñandú & Øre: «ça» (1996)", ["Comedy"]),
    (4, "Plain Title (1996)", ["Action"]),
]
UTF8_MOVIES = [  # the CSV layouts carry any Unicode
    (1, "Misérables, Les (1995)", ["Drama", "War"]),
    (2, "Spirited Away (Sen to Chihiro no kamikakushi) 千と千尋の神隠し (2001)", ["Adventure", "Animation", "Fantasy"]),
    (3, "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", ["Comedy", "Romance"]),
    (4, "Crouching Tiger, Hidden Dragon (Wo hu cang long) 臥虎藏龍 — “quoted” (2000)", ["Action", "Drama"]),
]


def write_100k(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "u.data").write_bytes("".join(f"{u}\t{m}\t{int(r)}\t{BASE_TIME + t}\n" for u, m, r, t in RATINGS).encode("latin-1"))
    lines = [f"{m}|{title}|01-Jan-1995||http://us.imdb.com/M/x|" + "|".join("1" if g in gs else "0" for g in GENRES_100K)
             for m, title, gs in LATIN1_MOVIES]
    (d / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return d


def write_1m(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "ratings.dat").write_bytes("".join(f"{u}::{m}::{int(r)}::{BASE_TIME + t}\n" for u, m, r, t in RATINGS).encode("latin-1"))
    (d / "movies.dat").write_bytes("".join(f"{m}::{t}::{'|'.join(gs)}\n" for m, t, gs in LATIN1_MOVIES).encode("latin-1"))
    return d


def write_csv(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n"
                                   + "".join(f"{u},{m},{r:.1f},{BASE_TIME + t}\n" for u, m, r, t in RATINGS), encoding="utf-8")
    rows = []
    for m, title, gs in UTF8_MOVIES:
        quoted = '"' + title.replace('"', '""') + '"' if any(c in title for c in ',"') else title
        rows.append(f"{m},{quoted},{'|'.join(gs)}\n")
    (d / "movies.csv").write_text("movieId,title,genres\n" + "".join(rows), encoding="utf-8")
    return d


@pytest.mark.parametrize("layout, writer, expected", [
    ("100k", write_100k, LATIN1_MOVIES),
    ("1m", write_1m, LATIN1_MOVIES),
    ("csv", write_csv, UTF8_MOVIES),
])
def test_movielens_latin1_and_unicode_titles(tmp_path, layout, writer, expected):
    folder = writer(tmp_path / "raw" / f"ml-{layout}")
    movie_file = folder / movielens.FILES[layout][1]
    if layout != "csv":  # the fixture really is Latin-1 ('é' is one byte 0xE9), not UTF-8
        assert b"Mis\xe9rables" in movie_file.read_bytes()
    movies = movielens.read_movies(folder, layout)
    assert dict(zip(movies["item"], movies["title"])) == {m: t for m, t, _ in expected}
    order = GENRES_100K if layout == "100k" else None  # ml-100k lists genres in u.genre order
    want_genres = {m: "|".join(sorted(gs, key=order.index) if order else gs) for m, _, gs in expected}
    assert dict(zip(movies["item"], movies["genres"])) == want_genres
    assert dict(zip(movies["item"], movies["category"])) == {m: g.split("|")[0] for m, g in want_genres.items()}

    movielens.prepare(folder, layout, "ml", tmp_path / "data", {"kind": "movielens"}, valid_fraction=0.5)
    items = contract.load(tmp_path / "data", "ml").items
    titles = {int(i): t for i, t in zip(items["raw_item"], items["title"])}
    assert titles == {m: t for m, t, _ in expected}  # items.parquet keeps them intact
    assert not any("Ã" in t for t in titles.values())  # no UTF-8 read as Latin-1 (mojibake)
