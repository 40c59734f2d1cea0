"""Sample builders: how a prepared dataset's train/valid/test samples are made from its behaviours.

``contract.prepare`` owns ids, sorting, categories and the files on disk; a builder owns only the
step "behaviours sorted by user then time -> sample tables". Every builder returns tables of the
same shape (``user, hist_end, item, category, label``; a sample's history is its user's first
``hist_end`` behaviours), so ``dinbench run`` reads every dataset the same way.

* :class:`DinProtocol` (the default, used by ``import``, ``synthetic``, Amazon and Taobao): the
  DIN paper's per-user leave-last-out protocol with one uniform negative per positive
  (see ``protocol.py``).
* :class:`RatingProtocol` (MovieLens, as the DIN paper used it): every rating is a sample, its label
  comes from the rating (no sampled negatives), its history is the user's earlier ratings, and the
  splits are made of *users* (a random user split in the paper's proportion, with a validation user
  set carved from the training users).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from dinbench.errors import DinbenchError
from dinbench.prepared.protocol import SPLITS, din_samples, user_offsets


@dataclass
class SortedBehaviours:
    """What a builder sees: the behaviours table after remapping and sorting (user, then time)."""

    users: np.ndarray  # [N] int32 1..n_users, sorted
    items: np.ndarray  # [N] int32 1..n_items
    item_category: np.ndarray  # [n_items + 1] int32, index 0 = padding
    n_users: int
    n_items: int
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # raw columns the builder asked for, same order


class SampleBuilder(Protocol):
    min_behaviours: int
    extra_columns: tuple[str, ...]  # raw columns carried (in sorted order) into ``SortedBehaviours.extra``

    def describe(self) -> dict[str, Any]:
        """The manifest's ``protocol`` entry (name, parameters, seeds)."""

    def build(self, b: SortedBehaviours) -> dict[str, pd.DataFrame]:
        """``{"train"|"valid"|"test": DataFrame[user, hist_end, item, category, label]}``."""

    def counts(self, splits: dict[str, pd.DataFrame]) -> dict[str, int]:
        """Extra counts for the manifest (beyond ``<split>_samples``)."""


@dataclass(frozen=True)
class DinProtocol:
    """The DIN paper's protocol: leave-last-out per user, one uniform negative per positive."""

    seed: int = 1234
    min_behaviours: int = 4
    extra_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.min_behaviours < 4:
            raise DinbenchError("min_behaviours must be at least 4 (one train, one valid, one test target)")

    def describe(self) -> dict[str, Any]:
        return {
            "name": "din",
            "min_behaviours": self.min_behaviours,
            "negatives_per_positive": 1,
            "negative_sampling": "uniform over items the user never interacted with",
            "negative_seed": self.seed,
            "train": "predict b(k+1) from b1..bk, k = 1..n-3",
            "valid": "predict b(n-1) from b1..b(n-2)",
            "test": "predict bn from b1..b(n-1)",
        }

    def build(self, b: SortedBehaviours) -> dict[str, pd.DataFrame]:
        return din_samples(b.users, b.items, b.item_category, b.n_users, b.n_items, seed=self.seed)

    def counts(self, splits: dict[str, pd.DataFrame]) -> dict[str, int]:
        return {}


# The DIN paper's MovieLens-20M split: 100,000 of its 138,493 users train, the rest test.
PAPER_TRAIN_USERS = 100_000
PAPER_ALL_USERS = 138_493


@dataclass(frozen=True)
class RatingProtocol:
    """Labels from ratings, every rating a sample, a random split of users.

    ``train_fraction`` of the users (default the paper's 100,000/138,493, rounded to whole users)
    are training users; ``valid_fraction`` of those are set aside as validation users; the rest
    are test users, and every sample of a test user is a test sample. ``min_history`` = 0 keeps
    the first rating of each user as a sample with an empty history (the paper: "every rating").
    """

    seed: int = 1234
    train_fraction: float = PAPER_TRAIN_USERS / PAPER_ALL_USERS
    valid_fraction: float = 0.1
    min_history: int = 0
    min_behaviours: int = 1
    label_rule: str = "rating >= 4"
    extra_columns: tuple[str, ...] = ("label",)

    def __post_init__(self) -> None:
        if not 0 < self.train_fraction < 1:
            raise DinbenchError(f"train fraction of users must lie in (0, 1) (got {self.train_fraction})")
        if not 0 <= self.valid_fraction < 1:
            raise DinbenchError(f"valid fraction of training users must lie in [0, 1) (got {self.valid_fraction})")
        if self.min_history < 0:
            raise DinbenchError("min_history must be at least 0")

    def split_users(self, n_users: int) -> np.ndarray:
        """[n_users + 1] split code per user id (0 train, 1 valid, 2 test; index 0 unused)."""
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(n_users) + 1
        n_train = int(round(n_users * self.train_fraction))
        n_valid = int(round(n_train * self.valid_fraction))
        if n_users >= 3 and (n_train - n_valid < 1 or n_train >= n_users or (self.valid_fraction > 0 and n_valid < 1)):
            raise DinbenchError(
                f"{n_users} users cannot be split into train, valid and test users in these proportions; "
                "use a larger dataset or other fractions"
            )
        code = np.full(n_users + 1, 2, dtype=np.int8)
        code[order[:n_valid]] = 1
        code[order[n_valid:n_train]] = 0
        return code

    def describe(self) -> dict[str, Any]:
        return {
            "name": "movielens",
            "label": f"1 if {self.label_rule} else 0 (no sampled negatives)",
            "samples": "every rating; history = the user's earlier ratings (time order, ties by movie id)",
            "min_history": self.min_history,
            "min_behaviours": self.min_behaviours,
            "split": "random user split: train users, valid users carved from them, test = every sample of the rest",
            "train_user_fraction": self.train_fraction,
            "train_user_fraction_source": f"DIN paper: {PAPER_TRAIN_USERS:,} of {PAPER_ALL_USERS:,} users",
            "valid_fraction_of_train_users": self.valid_fraction,
            "split_seed": self.seed,
        }

    def build(self, b: SortedBehaviours) -> dict[str, pd.DataFrame]:
        if "label" not in b.extra:
            raise DinbenchError("the rating protocol needs a label per behaviour")
        start = user_offsets(b.users, b.n_users)
        pos = np.arange(len(b.users), dtype=np.int64) - start[b.users]  # 0-based position in the user's sequence
        keep = pos >= self.min_history
        split = self.split_users(b.n_users)[b.users]
        frame = pd.DataFrame(
            {
                "user": b.users.astype(np.int32),
                "hist_end": pos.astype(np.int32),
                "item": b.items.astype(np.int32),
                "category": b.item_category[b.items].astype(np.int32),
                "label": np.asarray(b.extra["label"]).astype(np.int8),
            }
        )
        return {name: frame[keep & (split == i)].reset_index(drop=True) for i, name in enumerate(SPLITS)}

    def counts(self, splits: dict[str, pd.DataFrame]) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in SPLITS:
            out[f"{s}_users"] = int(splits[s]["user"].nunique())
            out[f"{s}_positives"] = int(splits[s]["label"].sum())
        return out


@dataclass(frozen=True)
class TargetProtocol:
    """The DIN protocol with only some behaviours as targets (e.g. Taobao buys after views).

    Behaviours flagged ``is_target`` (and not first in their user's sequence) are targets: per user
    the last target is test, the second-to-last valid, earlier ones train; every target gets one
    uniform negative the user never interacted with. Users with fewer than 3 targets keep their
    behaviours (they still shape the item set) but give no samples; they are counted.
    """

    seed: int = 1234
    target: str = "buy"
    min_behaviours: int = 1
    extra_columns: tuple[str, ...] = ("is_target",)

    def describe(self) -> dict[str, Any]:
        return {
            "name": f"din-{self.target}",
            "min_behaviours": self.min_behaviours,
            "targets": f"'{self.target}' behaviours only; history = every earlier behaviour",
            "min_targets_per_user": 3,
            "negatives_per_positive": 1,
            "negative_sampling": "uniform over items the user never interacted with",
            "negative_seed": self.seed,
            "train": "every target but the last two of a user",
            "valid": "the user's second-to-last target",
            "test": "the user's last target",
        }

    def build(self, b: SortedBehaviours) -> dict[str, pd.DataFrame]:
        from dinbench.prepared.protocol import sample_negatives

        start = user_offsets(b.users, b.n_users)
        pos = np.arange(len(b.users), dtype=np.int64) - start[b.users]
        rows = np.flatnonzero((np.asarray(b.extra["is_target"]) != 0) & (pos >= 1))
        t_users = b.users[rows]
        per_user = np.bincount(t_users, minlength=b.n_users + 1)
        # rank of each target from the end of its user's targets: 0 = last
        first_of_user = np.searchsorted(t_users, t_users, side="left")
        rank_from_end = per_user[t_users] - 1 - (np.arange(len(rows)) - first_of_user)
        ok = per_user[t_users] >= 3
        rows, t_users, rank_from_end = rows[ok], t_users[ok], rank_from_end[ok]
        split = np.where(rank_from_end == 0, 2, np.where(rank_from_end == 1, 1, 0))
        rng = np.random.default_rng(self.seed)
        neg = sample_negatives(t_users, b.items, b.users, b.n_items, rng)
        m = len(rows)
        out_item = np.empty(2 * m, dtype=np.int32)
        out_item[0::2], out_item[1::2] = b.items[rows], neg
        frame = pd.DataFrame(
            {
                "user": np.repeat(t_users.astype(np.int32), 2),
                "hist_end": np.repeat(pos[rows].astype(np.int32), 2),
                "item": out_item,
                "category": b.item_category[out_item].astype(np.int32),
                "label": np.tile(np.array([1, 0], dtype=np.int8), m),
            }
        )
        out_split = np.repeat(split, 2)
        return {name: frame[out_split == i].reset_index(drop=True) for i, name in enumerate(SPLITS)}

    def counts(self, splits: dict[str, pd.DataFrame]) -> dict[str, int]:
        return {"users_with_samples": int(splits["test"]["user"].nunique())}
