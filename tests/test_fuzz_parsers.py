"""Hypothesis fuzzing of every raw-file parser (issue 7.6).

Each parser gets (a) random bytes and (b) near-valid lines (valid lines of the published layouts,
mutated: truncated, fields removed / swapped / replaced by wrong types, huge numbers, quotes,
bytes that are not valid UTF-8), written in the exact file layout it expects. The only allowed
outcomes are a parsed result or a one-line ``DinbenchError``; any other exception fails, and so
does a call that takes longer than a few seconds (an alarm guards against loops).
"""

from __future__ import annotations

import gzip
import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dinbench.errors import DinbenchError
from dinbench.prepared import contract
from dinbench.sources import amazon, movielens, taobao
from dinbench.sources.interactions import read_interactions
from real_fixtures import GENRES_100K, META, MOVIES, RATINGS, REVIEWS, review_line

# DINBENCH_FUZZ_EXAMPLES=2000 for a longer hunt
FUZZ = settings(max_examples=int(os.environ.get("DINBENCH_FUZZ_EXAMPLES", "30")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIME_LIMIT_S = 10
# pandas warns while it tries a float such as 1e400 as an integer id, then raises (turned into DinbenchError)
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int = TIME_LIMIT_S):
    def on_alarm(signum, frame):
        raise Hang(f"parser still running after {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def only_dinbench_errors(call) -> None:
    """Run ``call``: a result or a one-line DinbenchError pass; anything else (or a hang) fails."""
    with time_limit():
        try:
            call()
        except DinbenchError as exc:
            assert "\n" not in str(exc), f"multi-line error: {exc!r}"


# ---------------------------------------------------------------- near-valid lines

ODD = [b"", b"-1", b"0", b"1e400", b"99999999999999999999999999", b"NaN", b"nan", b"inf", b"None", b"null",
       b"true", b"'", b'"', b'"unterminated', b"'a'", b"\xff\xfe", b"\xe9t\xe9", b"\x00", b"::", b"|", b",", b"\t",
       b"{", b"}", b"[", b"]", b"{'asin': 'I1'", b"[[", b"\\", b"\r", "é中".encode()]


@st.composite
def mutated_line(draw, valid: list[bytes], sep: bytes) -> bytes:
    line = draw(st.sampled_from(valid))
    kind = draw(st.sampled_from(["keep", "truncate", "drop", "swap", "replace", "insert", "dup_sep", "random"]))
    fields = line.split(sep) if sep else [line]
    if kind == "truncate":
        return line[: draw(st.integers(0, max(len(line) - 1, 0)))]
    if kind == "drop" and len(fields) > 1:
        del fields[draw(st.integers(0, len(fields) - 1))]
    elif kind == "swap" and len(fields) > 1:
        i, j = draw(st.integers(0, len(fields) - 1)), draw(st.integers(0, len(fields) - 1))
        fields[i], fields[j] = fields[j], fields[i]
    elif kind == "replace":
        i = draw(st.integers(0, len(fields) - 1))
        fields[i] = draw(st.sampled_from(ODD) | st.binary(max_size=12))
    elif kind == "insert":
        at = draw(st.integers(0, len(line)))
        return line[:at] + draw(st.sampled_from(ODD) | st.binary(max_size=6)) + line[at:]
    elif kind == "dup_sep":
        return line + sep + line
    elif kind == "random":
        return draw(st.binary(max_size=60))
    return sep.join(fields)


def near_valid(valid: list[str], sep: str, encoding: str = "utf-8"):
    lines = [v.encode(encoding) for v in valid]
    return st.lists(mutated_line(lines, sep.encode()), min_size=0, max_size=12).map(
        lambda ls: b"\n".join(ls) + b"\n"
    )


def content(valid: list[str], sep: str, encoding: str = "utf-8"):
    """(a) random bytes or (b) near-valid lines."""
    return st.binary(max_size=300) | near_valid(valid, sep, encoding)


@contextmanager
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# ---------------------------------------------------------------- valid lines of each layout

ML100K_DATA = [f"{u}\t{m}\t{int(r)}\t{881250949 + t}" for u, m, r, t in RATINGS]
ML100K_ITEM = [f"{m}|{title}|01-Jan-1995||http://us.imdb.com/M/x|" + "|".join("1" if g in gs else "0" for g in GENRES_100K)
               for m, title, gs in MOVIES]
ML1M_RATINGS = [f"{u}::{m}::{int(r)}::{881250949 + t}" for u, m, r, t in RATINGS]
ML1M_MOVIES = [f"{m}::{title}::{'|'.join(gs)}" for m, title, gs in MOVIES]
MLCSV_RATINGS = ["userId,movieId,rating,timestamp"] + [f"{u},{m},{r:.1f},{881250949 + t}" for u, m, r, t in RATINGS]
MLCSV_MOVIES = ["movieId,title,genres"] + [f'{m},"{title}",{"|".join(gs) or "(no genres listed)"}' for m, title, gs in MOVIES]
REVIEW_LINES = [review_line(*r) for r in REVIEWS]
META_LINES = [repr(m) for m in META.values()]
TAOBAO = ["1,2268318,2520377,pv,1511544070", "1,2333346,2520771,pv,1511561733", "1,2576651,149192,buy,1511572885",
          "2,3830808,4181361,pv,1511593493", "2,4365585,2520377,cart,1511596146", "2,4666650,4801426,fav,1511597000"]
IMPORT = ["user_id,item_id,cate_id,timestamp"] + [f"u{u},i{m},c{m % 3},{t}" for u, m, _, t in RATINGS]

LAYOUT_FILES = {
    "100k": (ML100K_DATA, "\t", ML100K_ITEM, "|", "latin-1"),
    "1m": (ML1M_RATINGS, "::", ML1M_MOVIES, "::", "latin-1"),
    "csv": (MLCSV_RATINGS, ",", MLCSV_MOVIES, ",", "utf-8"),
}


def write_movielens(d: Path, layout: str, ratings: bytes | None, movies: bytes | None) -> None:
    r_lines, _, m_lines, _, enc = LAYOUT_FILES[layout]
    r_name, m_name = movielens.FILES[layout]
    (d / r_name).write_bytes(ratings if ratings is not None else ("\n".join(r_lines) + "\n").encode(enc))
    (d / m_name).write_bytes(movies if movies is not None else ("\n".join(m_lines) + "\n").encode(enc))


def movielens_case(layout: str, which: str):
    r_lines, r_sep, m_lines, m_sep, enc = LAYOUT_FILES[layout]
    lines, sep = (r_lines, r_sep) if which == "ratings" else (m_lines, m_sep)
    return content(lines, sep, enc)


# ---------------------------------------------------------------- MovieLens


def _movielens(layout: str, which: str, data: bytes) -> None:
    with folder() as d:
        write_movielens(d, layout, data if which == "ratings" else None, data if which == "movies" else None)
        only_dinbench_errors(lambda: movielens.behaviours(d, layout))


@FUZZ
@given(data=movielens_case("100k", "ratings"))
def test_fuzz_ml100k_u_data(data):
    _movielens("100k", "ratings", data)


@FUZZ
@given(data=movielens_case("100k", "movies"))
def test_fuzz_ml100k_u_item(data):
    _movielens("100k", "movies", data)


@FUZZ
@given(data=movielens_case("1m", "ratings"))
def test_fuzz_ml1m_ratings_dat(data):
    _movielens("1m", "ratings", data)


@FUZZ
@given(data=movielens_case("1m", "movies"))
def test_fuzz_ml1m_movies_dat(data):
    _movielens("1m", "movies", data)


@FUZZ
@given(data=movielens_case("csv", "ratings"))
def test_fuzz_movielens_csv_ratings(data):
    _movielens("csv", "ratings", data)


@FUZZ
@given(data=movielens_case("csv", "movies"))
def test_fuzz_movielens_csv_movies(data):
    _movielens("csv", "movies", data)


# ---------------------------------------------------------------- Amazon


def _amazon(reviews: bytes | None, meta: bytes | None, skip: bool, gzipped: bool = True) -> None:
    with folder() as d:
        r_path, m_path = d / amazon.reviews_name("Electronics"), d / amazon.meta_name("Electronics")
        for path, body, valid in ((r_path, reviews, REVIEW_LINES), (m_path, meta, META_LINES)):
            if body is None:
                body = ("\n".join(valid) + "\n").encode()
            path.write_bytes(gzip.compress(body) if gzipped else body)
        only_dinbench_errors(lambda: amazon.behaviours(r_path, m_path, skip_bad_lines=skip))


@FUZZ
@given(data=content(REVIEW_LINES, ","), skip=st.booleans(), gzipped=st.booleans())
def test_fuzz_amazon_reviews(data, skip, gzipped):
    _amazon(data, None, skip, gzipped)


@FUZZ
@given(data=content(META_LINES, ","), skip=st.booleans(), gzipped=st.booleans())
def test_fuzz_amazon_meta(data, skip, gzipped):
    _amazon(None, data, skip, gzipped)


# ---------------------------------------------------------------- Taobao


@FUZZ
@given(data=content(TAOBAO, ","), positive=st.sampled_from(["pv", "buy"]))
def test_fuzz_taobao_csv(data, positive):
    keep = ("pv",) if positive == "pv" else ("pv", "buy")
    with folder() as d:
        path = d / "UserBehavior.csv"
        path.write_bytes(data)
        only_dinbench_errors(lambda: taobao.read(path, keep))


# ---------------------------------------------------------------- import CSV (read + prepare)


@FUZZ
@given(data=content(IMPORT, ","), suffix=st.sampled_from([".csv", ".tsv", ".csv.gz"]))
def test_fuzz_import_csv_read_and_prepare(data, suffix):
    with folder() as d:
        path = d / f"events{suffix}"
        if suffix == ".tsv":
            data = data.replace(b",", b"\t")
        path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)

        def run():
            raw = read_interactions(path)
            contract.prepare(raw, "fuzzed", d / "data", {"kind": "import"}, min_behaviours=4)

        only_dinbench_errors(run)
