"""The DIN paper's sample protocol, with an honest validation split.

For a user with behaviours b1..bn in time order (n >= ``min_behaviours``):

    train  predicts b(k+1) from b1..bk      for k = 1..n-3
    valid  predicts b(n-1) from b1..b(n-2)
    test   predicts bn     from b1..b(n-1)

Each positive gets one negative with the same history: an item drawn uniformly from the items the
user never interacted with (seeded; the paper's code seeds with 1234). The paper itself trained on
k = 1..n-2 with no validation split; that is exactly ``train + valid`` here (same rows, same
negatives), which is how ``--protocol paper`` is served from the same prepared files.

A sample does not copy its history: it references the user's behaviours by ``hist_end`` (the number
of behaviours before the target, i.e. the target's 0-based position in the user's sequence).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dinbench.errors import DinbenchError

SPLITS = ("train", "valid", "test")


def user_offsets(users: np.ndarray, n_users: int) -> np.ndarray:
    """Row offsets of each user in a behaviours table sorted by user (ids 1..n_users).

    Returns ``start`` of shape [n_users + 2]: user u's rows are ``start[u]:start[u + 1]``
    (``start[0] = start[1] = 0``; id 0 is padding and owns no rows).
    """
    counts = np.bincount(users, minlength=n_users + 1)  # [n_users + 1]
    start = np.zeros(n_users + 2, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    return start


def sample_negatives(
    users: np.ndarray,
    user_items: np.ndarray,
    beh_users: np.ndarray,
    n_items: int,
    rng: np.random.Generator,
    max_rounds: int = 1000,
) -> np.ndarray:
    """Draw one item per entry of ``users`` uniformly from 1..n_items, never an item of that user.

    ``beh_users``/``user_items`` list every (user, item) interaction. Vectorised rejection sampling:
    all draws at once, then only the rejected ones again.
    """
    stride = np.int64(n_items + 1)
    keys = beh_users.astype(np.int64)
    keys *= stride
    keys += user_items  # in place: one [N] int64 temporary, not three
    seen = np.unique(keys)  # sorted keys
    del keys
    per_user = np.bincount(seen // stride)  # distinct items per user
    if per_user.size and per_user.max() >= n_items:
        bad_user = int(np.argmax(per_user))
        raise DinbenchError(
            f"user {bad_user} interacted with every one of the {n_items} items, so no negative can be "
            "drawn for it; drop such users or add items"
        )
    neg = rng.integers(1, n_items + 1, size=len(users), dtype=np.int64)
    todo = np.arange(len(users))
    for _ in range(max_rounds):
        keys = users[todo].astype(np.int64) * stride + neg[todo]
        pos = np.searchsorted(seen, keys)
        pos = np.minimum(pos, len(seen) - 1)
        clash = seen[pos] == keys
        todo = todo[clash]
        if todo.size == 0:
            return neg.astype(np.int32)
        neg[todo] = rng.integers(1, n_items + 1, size=todo.size, dtype=np.int64)
    raise DinbenchError("negative sampling did not converge: some users have seen nearly every item")


def din_samples(
    beh_users: np.ndarray,
    beh_items: np.ndarray,
    item_category: np.ndarray,
    n_users: int,
    n_items: int,
    seed: int = 1234,
) -> dict[str, pd.DataFrame]:
    """Build train/valid/test sample tables from a behaviours table sorted by user then time.

    Args:
        beh_users: [N] user id of each behaviour (1..n_users, sorted, every user has >= 4 rows).
        beh_items: [N] item id of each behaviour (1..n_items).
        item_category: [n_items + 1] category id of each item (index 0 = padding).
    Returns:
        ``{"train"|"valid"|"test": DataFrame[user, hist_end, item, category, label]}``; rows come
        in (positive, negative) pairs sharing user and hist_end.
    """
    start = user_offsets(beh_users, n_users)
    n_rows = len(beh_users)
    pos_in_user = (np.arange(n_rows, dtype=np.int64) - start[beh_users]).astype(np.int32)  # [N] 0-based position
    length = (start[2:] - start[1:-1]).astype(np.int32)[beh_users - 1]  # [N] n of the row's user
    if n_rows and length.min() < 4:
        raise DinbenchError("the DIN protocol needs at least 4 behaviours per user")
    t_rows = np.flatnonzero(pos_in_user >= 1)  # b1 is never a target
    t_pos = pos_in_user[t_rows]
    del pos_in_user
    t_len = length[t_rows]
    del length
    split = np.where(t_pos == t_len - 1, 2, np.where(t_pos == t_len - 2, 1, 0)).astype(np.int8)  # 0 train 1 valid 2 test
    del t_len

    rng = np.random.default_rng(seed)
    users = beh_users[t_rows].astype(np.int32)
    neg_items = sample_negatives(users, beh_items, beh_users, n_items, rng)
    pos_items = beh_items[t_rows].astype(np.int32)
    del t_rows

    # Per split, positive and negative of the same history interleaved: [p0, n0, p1, n1, ...]; each
    # split's tables are built from its own targets, so no all-splits table is ever held.
    out = {}
    for code, name in enumerate(SPLITS):
        sel = np.flatnonzero(split == code)
        m = len(sel)
        item = np.empty(2 * m, dtype=np.int32)
        item[0::2], item[1::2] = pos_items[sel], neg_items[sel]
        out[name] = pd.DataFrame(
            {
                "user": np.repeat(users[sel], 2),
                "hist_end": np.repeat(t_pos[sel], 2),
                "item": item,
                "category": item_category[item].astype(np.int32),
                "label": np.tile(np.array([1, 0], dtype=np.int8), m),
            }
        )
    return out
