"""Real-data sources on hand-made fixtures in the published layouts, and on ../shared/data when present:
MovieLens (three layouts), Amazon reviews + meta, Taobao, safe archives and safe meta parsing."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dinbench.errors import DinbenchError
from dinbench.prepared import contract
from dinbench.prepared.builders import RatingProtocol
from dinbench.sources import amazon, movielens
from dinbench.sources.archive import numbered_lines, safe_extract_zip
from helpers import SHARED_DATA, assert_user_error
from real_fixtures import REVIEWS, review_line, write_amazon, write_ml1m, write_ml100k, write_mlcsv, zip_folder

ML_SMALL = SHARED_DATA / "ml-latest-small"

# Per user: (movie ids in time order, ties by movie id) and labels (rating >= 4)
ML_SEQUENCES = {1: [1, 2, 3, 4], 2: [1, 4, 2], 3: [2, 3], 4: [1, 4, 3, 2]}
ML_LABELS = {1: [1, 0, 1, 0], 2: [0, 1, 1], 3: [1, 0], 4: [1, 0, 1, 0]}
ML_FIRST_GENRE = {1: "Animation", 2: "Action", 3: "Drama", 4: "(no genres listed)"}


def _sequences(p: contract.Prepared) -> dict[str, list[str]]:
    raw_item = np.array([None, *p.items["raw_item"]], dtype=object)
    raw_user = dict(zip(p.users["user"], p.users["raw_user"]))
    return {raw_user[u]: list(raw_item[g["item"].to_numpy()]) for u, g in p.behaviours.groupby("user")}


def _category_names(p: contract.Prepared) -> dict[str, str]:
    names = ["(pad)", *p.manifest["categories"]]
    return {i: names[c] for i, c in zip(p.items["raw_item"], p.items["category"])}


@pytest.mark.parametrize("layout, writer", [("100k", write_ml100k), ("1m", write_ml1m), ("csv", write_mlcsv)])
def test_movielens_layouts_parse_order_categories_labels(tmp_path, layout, writer):
    folder = writer(tmp_path / "raw")
    movies = movielens.read_movies(folder, layout)
    assert movies.loc[movies["item"] == 3, "title"].item() == "Café Society (1995)"  # Latin-1 / UTF-8 decoded
    if layout != "csv":
        assert movies.loc[movies["item"] == 1, "genres"].item() == "Animation|Children's|Comedy"  # all genres kept
    m = movielens.prepare(folder, layout, "ml", tmp_path / "data", {"kind": "movielens"}, valid_fraction=0.5)
    p = contract.load(tmp_path / "data", "ml")
    assert m["protocol"]["name"] == "movielens" and m["protocol"]["split_seed"] == 1234
    assert m["counts"]["behaviours"] == 13 and m["counts"]["users"] == 4 and m["counts"]["items"] == 4  # movie 5 unrated
    assert _sequences(p) == {str(u): [str(i) for i in s] for u, s in ML_SEQUENCES.items()}
    cats = _category_names(p)
    assert {int(k): v for k, v in cats.items()} == ML_FIRST_GENRE
    assert set(p.items.columns) >= {"genres", "title"}
    assert p.behaviours["rating"].tolist()[:4] == [4.0, 3.0, 5.0, 2.0]
    # every rating is a sample, history = earlier ratings, labels from ratings, splits are user-disjoint
    samples = {s: p.splits[s] for s in ("train", "valid", "test")}
    assert sum(len(f) for f in samples.values()) == 13
    users = [set(f["user"]) for f in samples.values()]
    assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
    assert [len(u) for u in users] == [1, 2, 1]  # 4 users: round(4 x 0.722) = 3 train users, half of them valid
    raw_user = dict(zip(p.users["user"], p.users["raw_user"]))
    for frame in samples.values():
        for u, g in frame.groupby("user"):
            assert g["hist_end"].tolist() == list(range(len(ML_SEQUENCES[int(raw_user[u])])))
            assert g["label"].tolist() == ML_LABELS[int(raw_user[u])]


def test_user_split_follows_the_paper_proportion():
    code = RatingProtocol().split_users(138_493)[1:]
    assert (code != 2).sum() == 100_000 and (code == 1).sum() == 10_000 and (code == 2).sum() == 38_493
    code = RatingProtocol().split_users(610)[1:]
    assert [(code == i).sum() for i in range(3)] == [396, 44, 170]
    assert (RatingProtocol(seed=1).split_users(610) != RatingProtocol().split_users(610)).any()
    with pytest.raises(DinbenchError, match="train fraction"):
        RatingProtocol(train_fraction=1.0)


def test_movielens_from_zip_checks_md5_and_refuses_path_traversal(cli, tmp_path):
    invoke, data, _ = cli
    archive = zip_folder(write_mlcsv(tmp_path / "src"), tmp_path / "ml-latest-small.zip")
    md5 = archive.with_name(archive.name + ".md5")
    md5.write_text("MD5 (ml-latest-small.zip) = " + "0" * 32 + "\n")
    assert_user_error(invoke("download", "movielens-latest-small", "--from", str(archive)), "fails its checksum")
    md5.write_text(hashlib.md5(archive.read_bytes()).hexdigest() + "  ml-latest-small.zip\n")
    r = invoke("download", "movielens-latest-small", "--from", str(archive), "--valid-fraction", "0.5")
    assert r.exit_code == 0, r.output
    assert contract.read_manifest(data, "movielens-latest-small")["source"]["files"]["ml-latest-small.zip"]["verified"]

    evil = tmp_path / "evil" / "ml-latest-small.zip"
    evil.parent.mkdir()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n")
        z.writestr("../escaped.txt", "owned")
    r = invoke("download", "movielens-latest-small", "--force", "--from", str(evil))
    assert_user_error(r, "../escaped.txt", "refusing")
    assert not list(tmp_path.rglob("escaped.txt"))


def test_safe_extract_refuses_absolute_and_symlink_members(tmp_path):
    for name, attr in (("/etc/evil", 0), ("ok/link", (0o120777 << 16))):
        archive = tmp_path / "a.zip"
        with zipfile.ZipFile(archive, "w") as z:
            info = zipfile.ZipInfo(name)
            info.external_attr = attr
            z.writestr(info, "../../outside")
        with pytest.raises(DinbenchError, match="refusing"):
            safe_extract_zip(archive, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_amazon_order_category_rule_and_unknown_meta(cli, tmp_path):
    invoke, data, _ = cli
    write_amazon(tmp_path / "raw")
    r = invoke("download", "amazon-electronics", "--from", str(tmp_path / "raw"))
    assert r.exit_code == 0, r.output
    p = contract.load(data, "amazon-electronics")
    # by unixReviewTime; the tie between I2 and I3 (user A1) keeps the file's order
    assert _sequences(p) == {"A1": ["I4", "I2", "I3", "I1", "I5"], "B2": ["I2", "I1", "I6", "I3"],
                             "C3": ["I4", "I5", "I6", "I7", "I1"]}
    assert _category_names(p) == {"I1": "Monitor Accessories", "I2": "Lens Caps", "I3": "Headphones", "I4": "Headphones",
                                  "I5": "Monitor Accessories", "I6": "(unknown)", "I7": "(unknown)"}
    m = p.manifest
    read = m["source"]["read"]
    assert read["reviews"] == len(REVIEWS) and read["reviewed_items_without_meta"] == 1 and read["items_unknown_category"] == 2
    assert read["meta_lines_skipped_unreviewed"] == 2  # I8, I9: never evaluated
    assert m["protocol"]["name"] == "din" and m["counts"]["categories"] == 4
    # the DIN protocol: one negative per positive, never an item of the user
    seen = p.behaviours.groupby("user")["item"].apply(set).to_dict()
    for frame in p.splits.values():
        negs = frame[frame["label"] == 0]
        assert len(negs) == (frame["label"] == 1).sum()
        assert all(i not in seen[u] for u, i in zip(negs["user"], negs["item"]))
    r = invoke("datasets", "--stats")
    assert r.exit_code == 0 and "reviews" in r.stdout and "goods" in r.stdout and "192,403" in r.stdout


def test_amazon_meta_code_is_rejected_not_executed(cli, tmp_path):
    invoke, data, _ = cli
    marker = tmp_path / "PWNED"
    lines = [repr({"asin": "I2", "categories": [["Electronics", "Headphones"]]}),
             "{'asin': 'I1', 'title': __import__('os').system('touch " + str(marker) + "')}"]
    write_amazon(tmp_path / "raw", meta_lines=lines)
    r = invoke("download", "amazon-electronics", "--from", str(tmp_path / "raw"))
    assert_user_error(r, "meta_Electronics.json.gz line 2", "--skip-bad-lines")
    assert not marker.exists() and not contract.is_prepared(data, "amazon-electronics")
    # with --skip-bad-lines the line is counted and reported; I1 falls back to the unknown category
    r = invoke("download", "amazon-electronics", "--from", str(tmp_path / "raw"), "--skip-bad-lines")
    assert r.exit_code == 0, r.output
    assert "skipped 1 malformed line(s) of meta_Electronics.json.gz" in r.stdout
    assert not marker.exists()
    bad = contract.read_manifest(data, "amazon-electronics")["source"]["read"]["bad_lines"]
    assert bad[0]["skipped_lines"] == 1 and "line 2" in bad[0]["examples"][0]


def test_amazon_malformed_review_line_names_file_and_line(tmp_path):
    lines = [review_line(*r) for r in REVIEWS[:3]] + ['{"reviewerID": "A1", "asin": ', review_line(*REVIEWS[3])]
    reviews, _ = write_amazon(tmp_path, review_lines=lines)
    with pytest.raises(DinbenchError, match=r"reviews_Electronics_5.json.gz line 4: not valid JSON"):
        amazon.read_reviews(reviews)
    rev, bad = amazon.read_reviews(reviews, skip_bad_lines=True)
    assert len(rev) == 4 and bad.count == 1


def test_truncated_gzip_is_reported_with_file_and_line(cli, tmp_path):
    invoke, _, _ = cli
    reviews, _ = write_amazon(tmp_path / "raw", review_lines=[review_line(f"U{i % 50}", f"I{i}", 1_300_000_000 + i) for i in range(5000)])
    blob = reviews.read_bytes()
    reviews.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DinbenchError, match=r"reviews_Electronics_5.json.gz: the gzip stream is truncated .* at line \d+"):
        for _ in numbered_lines(reviews):
            pass
    assert_user_error(invoke("download", "amazon-electronics", "--from", str(reviews)), "truncated", "line", "--force")


def test_amazon_from_a_single_file_needs_the_meta_beside_it(cli, tmp_path):
    invoke, _, _ = cli
    reviews, meta = write_amazon(tmp_path / "raw")
    meta.unlink()
    assert_user_error(invoke("download", "amazon-electronics", "--from", str(reviews)), "meta_Electronics.json.gz not found")


def _taobao(tmp_path: Path) -> Path:
    rows = []
    for u in (1, 2, 3):
        for k in range(6):
            rows.append(f"{u},{100 + (u * 7 + k) % 13},{k % 3 + 1},pv,{1_511_540_000 + 60 * k}")
        for k in range(3):
            rows.append(f"{u},{200 + u * 3 + k},9,buy,{1_511_540_000 + 60 * (2 * k + 1)}")
    rows.append("4,100,1,cart,1511540000")
    path = tmp_path / "UserBehavior.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_taobao_pv_sequences_and_buy_targets(cli, tmp_path):
    invoke, data, _ = cli
    path = _taobao(tmp_path)
    r = invoke("download", "taobao", "--from", str(path))
    assert r.exit_code == 0, r.output
    p = contract.load(data, "taobao")
    assert p.manifest["counts"]["behaviours"] == 18 and p.manifest["source"]["positive"] == "pv"
    r = invoke("download", "taobao", "--from", str(tmp_path), "--positive", "buy", "--force")
    assert r.exit_code == 0, r.output
    p = contract.load(data, "taobao")
    assert p.manifest["protocol"]["name"] == "din-buy" and p.manifest["counts"]["behaviours"] == 27
    buy_items = {str(200 + u * 3 + k) for u in (1, 2, 3) for k in range(3)}
    raw_item = dict(zip(p.items["item"], p.items["raw_item"]))
    for s, n in (("train", 3), ("valid", 3), ("test", 3)):
        pos = p.splits[s][p.splits[s]["label"] == 1]
        assert len(pos) == n and {raw_item[i] for i in pos["item"]} <= buy_items
    bad = tmp_path / "bad" / "UserBehavior.csv"
    bad.parent.mkdir()
    bad.write_text("1,2,3,click,1511540000\n")
    assert_user_error(invoke("download", "taobao", "--from", str(bad), "--force"), "line 1", "click")


@pytest.mark.skipif(not ML_SMALL.is_dir(), reason=f"real MovieLens data not found at {ML_SMALL}")
def test_real_movielens_latest_small(cli):
    invoke, data, _ = cli
    r = invoke("download", "movielens-latest-small", "--from", str(ML_SMALL))
    assert r.exit_code == 0, r.output
    m = contract.read_manifest(data, "movielens-latest-small")
    c = m["counts"]
    assert (c["behaviours"], c["users"], c["items"]) == (100_836, 610, 9_724)
    assert (c["train_users"], c["valid_users"], c["test_users"]) == (396, 44, 170)
    assert c["train_samples"] + c["valid_samples"] + c["test_samples"] == 100_836
    r = invoke("datasets", "--stats")
    assert r.exit_code == 0
    for text in ("100,836", "610", "9,724", "ratings", "movies"):
        assert text in r.stdout
    p = contract.load(data, "movielens-latest-small")
    raw = movielens.read_ratings(ML_SMALL, "csv")
    positives = sum(int(f["label"].sum()) for f in p.splits.values())
    assert positives == int((raw["rating"] >= 4).sum())
    # time order, ties by movie id, within every user
    b = p.behaviours
    assert (b.groupby("user")["time"].diff().dropna() >= 0).all()


def test_scale_generator_writes_the_real_format(tmp_path):
    """benchmarks/make_amazon_like.py at a tiny fraction: the Amazon reader takes its pair as it is."""
    import subprocess
    import sys

    from helpers import REPO_ROOT

    subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "make_amazon_like.py"), str(tmp_path / "raw"),
                    "--fraction", "0.001"], check=True, capture_output=True, timeout=60)
    m = amazon.prepare((tmp_path / "raw" / "reviews_Electronics_5.json.gz", tmp_path / "raw" / "meta_Electronics.json.gz"),
                       "like", tmp_path / "data", {"kind": "amazon"})
    c = m["counts"]
    assert (c["behaviours"], c["users"], c["items"]) == (1_689, 192, 63)
    assert m["source"]["read"]["items_unknown_category"] == 0 and c["dropped_users"] == 0
