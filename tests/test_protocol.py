"""The prepared-data contract and the DIN sample protocol, on hand-made and random histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dinbench.errors import DinbenchError
from dinbench.prepared import contract, load, prepare
from helpers import random_raw

SOURCE = {"kind": "test"}

# User "A": 6 behaviours, rows out of time order, and a time tie (a6 is listed before a5, both at
# t=50: the stable sort must keep a6 first, although "a5" < "a6"). User "B": 4 behaviours.
# User "C": 3 behaviours -> dropped. Rows of the users are interleaved.
HAND_ROWS = [
    ("A", "a3", "x", 30),
    ("B", "b2", "y", 200),
    ("A", "a1", "x", 10),
    ("C", "c1", "z", 5),
    ("A", "a6", "y", 50),
    ("B", "b1", "y", 100),
    ("A", "a2", "y", 20),
    ("C", "c2", "z", 6),
    ("A", "a5", "x", 50),
    ("B", "a1", "x", 400),  # B shares item a1 with A
    ("A", "a4", "x", 40),
    ("B", "b3", "y", 300),
    ("C", "c3", "z", 7),
]
# Expected sequences in time order (raw item ids).
SEQ = {"A": ["a1", "a2", "a3", "a4", "a6", "a5"], "B": ["b1", "b2", "b3", "a1"]}


@pytest.fixture
def hand(tmp_path):
    raw = pd.DataFrame(HAND_ROWS, columns=["user", "item", "category", "time"])
    manifest = prepare(raw, "hand", tmp_path, SOURCE, seed=7)
    return manifest, load(tmp_path, "hand")


def _raw_items(p):
    """id -> raw item id (index 0 = padding)."""
    return np.array([None, *p.items["raw_item"].tolist()], dtype=object)


def _sequences(p) -> dict[int, np.ndarray]:
    b = p.behaviours
    return {int(u): g["item"].to_numpy() for u, g in b.groupby("user", sort=True)}


def test_hand_history_counts_and_dropped_user(hand):
    manifest, p = hand
    c = manifest["counts"]
    assert c["input_rows"] == 13
    assert c["users"] == 2 and c["dropped_users"] == 1 and c["dropped_behaviours"] == 3
    assert c["behaviours"] == 10
    assert c["items"] == 9  # a1..a6 and b1..b3 (a1 shared; C's items are gone)
    assert c["categories"] == 2  # z only occurred for the dropped user
    assert set(p.users["raw_user"]) == {"A", "B"}
    assert not set(p.items["raw_item"]) & {"c1", "c2", "c3"}
    # train: A has k = 1..3, B has k = 1 -> 4 positives; valid/test: one positive per user.
    assert (c["train_samples"], c["valid_samples"], c["test_samples"]) == (8, 4, 4)
    assert {s: len(p.splits[s]) for s in ("train", "valid", "test")} == {"train": 8, "valid": 4, "test": 4}


def test_hand_history_behaviours_sorted_stably_by_user_then_time(hand):
    _, p = hand
    raw_item = _raw_items(p)
    raw_user = dict(zip(p.users["user"], p.users["raw_user"]))
    b = p.behaviours
    got = {raw_user[u]: list(raw_item[g["item"].to_numpy()]) for u, g in b.groupby("user", sort=True)}
    assert got == SEQ  # a6 before a5: the tie keeps the input order
    assert list(b.columns) == ["user", "item", "category", "time"]
    assert (np.diff(b["user"].to_numpy()) >= 0).all()
    same_user = np.diff(b["user"].to_numpy()) == 0
    assert (np.diff(b["time"].to_numpy())[same_user] >= 0).all()
    assert b.loc[b["user"] == b["user"].iloc[0], "time"].tolist() == [10, 20, 30, 40, 50, 50]


def test_hand_history_ids_are_dense_from_one(hand):
    _, p = hand
    n_u, n_i, n_c = p.n_users, p.n_items, p.n_categories
    assert p.users["user"].tolist() == list(range(1, n_u + 1))
    assert p.items["item"].tolist() == list(range(1, n_i + 1))
    assert set(p.items["category"]) == set(range(1, n_c + 1))
    b = p.behaviours
    assert set(b["user"]) == set(range(1, n_u + 1))
    assert set(b["item"]) == set(range(1, n_i + 1))
    for s, f in p.splits.items():
        for col, hi in (("user", n_u), ("item", n_i), ("category", n_c)):
            assert f[col].min() >= 1 and f[col].max() <= hi, (s, col)
    # Ids follow the sorted raw ids, and each item keeps its category.
    assert p.users["raw_user"].tolist() == ["A", "B"]
    assert p.items["raw_item"].tolist() == sorted(p.items["raw_item"])
    cat_of = dict(zip(p.items["item"], p.items["category"]))
    assert (b["category"] == b["item"].map(cat_of)).all()
    cat_name = {i + 1: name for i, name in enumerate(p.manifest["categories"])}
    raw_cat = {r[1]: r[2] for r in HAND_ROWS}
    assert all(cat_name[c] == raw_cat[r] for r, c in zip(p.items["raw_item"], p.items["category"]))


def test_hand_history_samples_follow_the_din_protocol(hand):
    _, p = hand
    raw_item = _raw_items(p)
    raw_user = dict(zip(p.users["user"], p.users["raw_user"]))

    def positives(split):
        f = p.splits[split]
        f = f[f["label"] == 1]
        return sorted((raw_user[u], int(h), raw_item[i]) for u, h, i in zip(f["user"], f["hist_end"], f["item"]))

    assert positives("train") == [("A", 1, "a2"), ("A", 2, "a3"), ("A", 3, "a4"), ("B", 1, "b2")]
    assert positives("valid") == [("A", 4, "a6"), ("B", 2, "b3")]
    assert positives("test") == [("A", 5, "a5"), ("B", 3, "a1")]
    items_of = {u: set(SEQ[u]) for u in SEQ}
    for split, f in p.splits.items():
        # (positive, negative) pairs with the same user and history
        assert f["label"].tolist() == [1, 0] * (len(f) // 2)
        pos, neg = f.iloc[0::2].reset_index(drop=True), f.iloc[1::2].reset_index(drop=True)
        assert (pos["user"] == neg["user"]).all() and (pos["hist_end"] == neg["hist_end"]).all()
        for u, i in zip(neg["user"], neg["item"]):
            assert raw_item[i] not in items_of[raw_user[u]], (split, raw_user[u], raw_item[i])
        # the candidate's category is its item's category
        cat_of = dict(zip(p.items["item"], p.items["category"]))
        assert (f["category"] == f["item"].map(cat_of)).all()


def test_random_dataset_protocol_invariants(tmp_path):
    raw = random_raw(n_users=150, n_items=120, seed=1, min_len=2, max_len=14)
    lengths = raw.groupby("user").size()
    manifest = prepare(raw, "rand", tmp_path, SOURCE, seed=99)
    p = load(tmp_path, "rand")
    c = manifest["counts"]
    assert c["dropped_users"] == int((lengths < 4).sum()) > 0
    assert c["users"] == int((lengths >= 4).sum())
    assert c["behaviours"] == int(lengths[lengths >= 4].sum())

    seqs = _sequences(p)
    n = {u: len(s) for u, s in seqs.items()}
    assert c["train_samples"] == 2 * sum(k - 3 for k in n.values())
    assert c["valid_samples"] == c["test_samples"] == 2 * len(n)
    user_items = {u: set(s.tolist()) for u, s in seqs.items()}
    test_end = {}
    for split, f in p.splits.items():
        assert f["label"].tolist() == [1, 0] * (len(f) // 2)
        pos, neg = f.iloc[0::2], f.iloc[1::2]
        assert (pos["user"].to_numpy() == neg["user"].to_numpy()).all()
        assert (pos["hist_end"].to_numpy() == neg["hist_end"].to_numpy()).all()
        for u, h, i in zip(pos["user"], pos["hist_end"], pos["item"]):
            assert seqs[u][h] == i  # the positive is the true next behaviour
            if split == "train":
                assert 1 <= h <= n[u] - 3
            elif split == "valid":
                assert h == n[u] - 2
            else:
                assert h == n[u] - 1
                test_end[u] = h
        for u, i in zip(neg["user"], neg["item"]):
            assert i not in user_items[u]  # never one of the user's own items, past or future
    assert set(test_end) == set(seqs)
    for split in ("train", "valid"):
        f = p.splits[split]
        used = set(zip(f["user"], f["hist_end"]))
        assert not any((u, h) in used for u, h in test_end.items()), split
    # every (user, target position) appears in exactly one split
    all_pos = pd.concat([f[f["label"] == 1][["user", "hist_end"]] for f in p.splits.values()])
    assert not all_pos.duplicated().any()
    assert len(all_pos) == sum(k - 1 for k in n.values())


def test_negative_sampling_is_seeded(tmp_path):
    raw = random_raw(n_users=80, n_items=200, seed=2, min_len=4)
    prepare(raw, "s1", tmp_path, SOURCE, seed=5)
    prepare(raw, "s1b", tmp_path, SOURCE, seed=5)
    prepare(raw, "s2", tmp_path, SOURCE, seed=6)
    a, b, c = (load(tmp_path, n) for n in ("s1", "s1b", "s2"))
    for split in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(a.splits[split], b.splits[split])
        fa, fc = a.splits[split], c.splits[split]
        pd.testing.assert_frame_equal(fa[fa["label"] == 1], fc[fc["label"] == 1])  # positives fixed
    neg_a = a.splits["train"].query("label == 0")["item"].to_numpy()
    neg_c = c.splits["train"].query("label == 0")["item"].to_numpy()
    assert (neg_a != neg_c).mean() > 0.5
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_min_behaviours_is_respected(tmp_path):
    raw = random_raw(n_users=60, n_items=300, seed=4, min_len=2, max_len=10)
    lengths = raw.groupby("user").size()
    manifest = prepare(raw, "m6", tmp_path, SOURCE, min_behaviours=6)
    assert manifest["counts"]["users"] == int((lengths >= 6).sum())
    assert manifest["counts"]["dropped_users"] == int((lengths < 6).sum())
    assert manifest["protocol"]["min_behaviours"] == 6
    hand = pd.DataFrame(HAND_ROWS, columns=["user", "item", "category", "time"])
    with pytest.raises(DinbenchError, match="at least 4"):
        prepare(hand, "m3", tmp_path, SOURCE, min_behaviours=3)
    with pytest.raises(DinbenchError, match="at least 7"):
        prepare(hand, "m7", tmp_path, SOURCE, min_behaviours=7)
    # only A is left and it has seen every item: no negative exists
    with pytest.raises(DinbenchError, match="every one of the 6 items"):
        prepare(hand, "m5", tmp_path, SOURCE, min_behaviours=5)
    assert not any(contract.is_prepared(tmp_path, n) for n in ("m3", "m5", "m7"))


def test_altered_table_breaks_the_fingerprint(tmp_path, hand):
    _, p = hand
    root = p.path.parent
    tables = {"behaviours": p.behaviours, "items": p.items, "users": p.users, **p.splits}
    assert contract.fingerprint(tables) == p.fingerprint
    train = p.splits["train"].copy()
    train.loc[0, "label"] = 1 - train.loc[0, "label"]  # flip one label, same dtype
    assert train["label"].dtype == p.splits["train"]["label"].dtype
    assert contract.fingerprint({**tables, "train": train}) != p.fingerprint
    train.to_parquet(p.path / "train.parquet", index=False)
    with pytest.raises(DinbenchError, match="fingerprint"):
        load(root, "hand")
    load(root, "hand", verify=False)  # only verification refuses it


def test_load_refuses_missing_and_damaged_datasets(tmp_path, hand):
    _, p = hand
    root = p.path.parent
    with pytest.raises(DinbenchError, match="not prepared"):
        load(root, "nope")
    (p.path / "valid.parquet").write_bytes(b"not parquet")
    with pytest.raises(DinbenchError, match="damaged"):
        load(root, "hand")
    (p.path / "manifest.json").write_text("{trunc", encoding="utf-8")
    with pytest.raises(DinbenchError):
        load(root, "hand")
