"""``dinbench import``: the user's own interactions file, hand-made fixtures and the real amazon-beauty file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dinbench.prepared import contract
from helpers import SHARED_DATA, assert_user_error

AMAZON_BEAUTY = SHARED_DATA / "amazon-beauty" / "interactions.csv"


def amazon_layout(n_users: int = 12, seed: int = 0) -> pd.DataFrame:
    """The amazon-beauty layout: user_id,item_id,cate_id,timestamp; timestamp = 0-based position.

    Rows of a user are in review order; each item has one fixed category; lengths 5..9.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        n = int(rng.integers(5, 10))
        items = rng.choice(np.arange(1, 41), size=n, replace=False)
        rows += [(u, int(i), int(i) % 7 + 100, pos) for pos, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "cate_id", "timestamp"])


def _check_sequences(prepared, frame, user="user_id", item="item_id", time="timestamp"):
    """The prepared behaviours are the file's rows, per user in time order, with raw ids kept."""
    raw_item = np.array([None, *prepared.items["raw_item"]], dtype=object)
    raw_user = dict(zip(prepared.users["user"], prepared.users["raw_user"]))
    got = {raw_user[u]: list(raw_item[g["item"].to_numpy()]) for u, g in prepared.behaviours.groupby("user")}
    ordered = frame.sort_values([user, time], kind="stable")
    want = {str(u): [str(i) for i in g[item]] for u, g in ordered.groupby(user)}
    assert got == want


def test_import_amazon_layout_csv(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout()
    path = tmp_path / "beauty.csv"
    frame.to_csv(path, index=False)
    r = invoke("import", str(path), "--name", "x")
    assert r.exit_code == 0, r.output
    assert "order key" in r.stdout
    p = contract.load(data, "x")
    m = p.manifest
    assert m["time_unit"] == "order"
    assert m["source"]["kind"] == "import" and m["source"]["columns"]["category"] == "cate_id"
    assert m["counts"]["users"] == 12 and m["counts"]["behaviours"] == len(frame)
    assert m["counts"]["items"] == frame["item_id"].nunique()
    assert m["counts"]["categories"] == frame["cate_id"].nunique() == len(m["categories"])
    assert m["counts"]["valid_samples"] == m["counts"]["test_samples"] == 24
    _check_sequences(p, frame)
    # ages are positions: a history item k steps before the target has age k
    b = p.behaviours
    assert (b.groupby("user")["time"].diff().dropna() == 1).all()
    # the category of each item is the file's cate_id
    names = dict(zip(range(1, len(m["categories"]) + 1), m["categories"]))
    raw_cat = dict(zip(frame["item_id"].astype(str), frame["cate_id"].astype(str)))
    assert all(names[c] == raw_cat[i] for i, c in zip(p.items["raw_item"], p.items["category"]))
    # an existing name is refused without --force, accepted with it
    assert_user_error(invoke("import", str(path), "--name", "x"), "already exists", "--force")
    assert invoke("import", str(path), "--name", "x", "--force").exit_code == 0


def test_import_unix_seconds(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout(seed=1)
    frame["timestamp"] = 1_400_000_000 + frame["timestamp"] * 86_400 + frame["user_id"]
    path = tmp_path / "seconds.csv"
    frame.sample(frac=1.0, random_state=0).to_csv(path, index=False)  # rows shuffled
    r = invoke("import", str(path), "--name", "secs")
    assert r.exit_code == 0, r.output
    p = contract.load(data, "secs")
    assert p.manifest["time_unit"] == "seconds"
    assert "order key" not in r.stdout
    _check_sequences(p, frame)


def test_import_custom_columns_tsv(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout(seed=2).rename(
        columns={"user_id": "uid", "item_id": "asin", "cate_id": "genre", "timestamp": "when"}
    )
    frame["rating"] = 5
    path = tmp_path / "mine.tsv"
    frame.to_csv(path, sep="\t", index=False)
    r = invoke("import", str(path), "--name", "mine", "--user-col", "uid", "--item-col", "asin",
               "--category-col", "genre", "--time-col", "when")
    assert r.exit_code == 0, r.output
    p = contract.load(data, "mine")
    assert p.manifest["source"]["columns"] == {"user": "uid", "item": "asin", "category": "genre", "time": "when"}
    assert p.n_categories == frame["genre"].nunique()
    _check_sequences(p, frame, user="uid", item="asin", time="when")


def test_import_without_category_column(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout(seed=3).drop(columns=["cate_id"])
    path = tmp_path / "nocat.csv"
    frame.to_csv(path, index=False)
    r = invoke("import", str(path), "--name", "nocat", "--category-col", "")
    assert r.exit_code == 0, r.output
    p = contract.load(data, "nocat")
    assert p.n_categories == 1 and p.manifest["categories"] == ["(unknown)"]
    assert set(p.items["category"]) == {1} and set(p.behaviours["category"]) == {1}
    assert all(set(f["category"]) == {1} for f in p.splits.values())
    assert p.manifest["source"]["columns"]["category"] is None


def test_import_missing_column_lists_the_files_columns(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout().rename(columns={"timestamp": "ts"})
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    r = invoke("import", str(path), "--name", "bad")
    assert_user_error(r, "timestamp", "user_id, item_id, cate_id, ts", "--time-col")
    assert not contract.is_prepared(data, "bad")


def test_import_parquet(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout(seed=4)
    frame["user_id"] = "user-" + frame["user_id"].astype(str)  # string ids survive too
    path = tmp_path / "beauty.parquet"
    frame.to_parquet(path, index=False)
    r = invoke("import", str(path), "--name", "pq")
    assert r.exit_code == 0, r.output
    p = contract.load(data, "pq")
    assert p.manifest["time_unit"] == "order"
    assert p.n_users == 12
    _check_sequences(p, frame)


def test_import_user_errors(cli, tmp_path):
    invoke, data, _ = cli
    assert_user_error(invoke("import", str(tmp_path / "absent.csv"), "--name", "a"), "no such file")
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    assert_user_error(invoke("import", str(odd), "--name", "a"), ".csv", ".parquet")
    good = tmp_path / "ok.csv"
    amazon_layout().to_csv(good, index=False)
    assert_user_error(invoke("import", str(good), "--name", "synthetic"), "reserved")
    assert_user_error(invoke("import", str(good), "--name", "../up"), "invalid dataset name")
    assert_user_error(invoke("import", str(good), "--name", "a", "--min-behaviours", "3"), "at least 4")
    short = amazon_layout()
    short = short[short.groupby("user_id").cumcount() < 3]
    short.to_csv(good, index=False)
    assert_user_error(invoke("import", str(good), "--name", "a"), "no user has at least 4 behaviours")
    assert not data.exists() or not any(contract.is_prepared(data, n) for n in ("a", "synthetic"))


@pytest.mark.skipif(not AMAZON_BEAUTY.is_file(), reason=f"real data not present: {AMAZON_BEAUTY}")
def test_import_real_amazon_beauty(cli):
    invoke, data, _ = cli
    r = invoke("import", str(AMAZON_BEAUTY), "--name", "amazon-beauty")
    assert r.exit_code == 0, r.output
    m = contract.read_manifest(data, "amazon-beauty")
    c = m["counts"]
    assert c["users"] == 22_363
    assert c["items"] == 12_101
    assert c["categories"] == 195
    assert c["behaviours"] == 198_502 == c["input_rows"]
    assert c["dropped_users"] == 0 and c["dropped_behaviours"] == 0
    assert c["valid_samples"] == c["test_samples"] == 2 * 22_363
    assert c["train_samples"] == 2 * (198_502 - 3 * 22_363)  # k = 1..n-3 per user
    assert m["time_unit"] == "order"


def test_import_iso_dates_are_accepted(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout(seed=5)
    frame["timestamp"] = (pd.Timestamp("2014-06-02") + pd.to_timedelta(frame["timestamp"], unit="D")).astype(str)
    path = tmp_path / "dates.csv"
    frame.to_csv(path, index=False)
    r = invoke("import", str(path), "--name", "dates")
    assert r.exit_code == 0, r.output
    p = contract.load(data, "dates")
    assert p.manifest["time_unit"] == "seconds"
    _check_sequences(p, frame)


# pandas < 3 parses dates to nanoseconds, where the conversion happens to be right.


def test_import_iso_dates_become_unix_seconds(tmp_path):
    raw = amazon_layout(seed=5).rename(columns={"user_id": "user", "item_id": "item", "cate_id": "category"})
    raw["time"] = (pd.Timestamp("2014-06-02") + pd.to_timedelta(raw.pop("timestamp"), unit="D")).astype(str)
    contract.prepare(raw, "dates", tmp_path, {"kind": "test"})
    b = contract.load(tmp_path, "dates").behaviours
    assert b.groupby("user")["time"].min().eq(1_401_667_200).all()  # 2014-06-02T00:00:00Z
    assert (b.groupby("user")["time"].diff().dropna() == 86_400).all()


def test_import_error_message_keeps_brackets_in_column_names(cli, tmp_path):
    invoke, _, _ = cli
    path = tmp_path / "units.csv"
    pd.DataFrame({"user_id": [1], "item_id": [2], "cate_id": [3], "time [s]": [4]}).to_csv(path, index=False)
    assert_user_error(invoke("import", str(path), "--name", "u"), "user_id, item_id, cate_id, time [s]")
