"""AUC, GAUC (the DIN paper's user-weighted AUC) and logloss.

GAUC = sum_u w_u * AUC_u / sum_u w_u, with w_u the user's number of samples (impressions) and
AUC_u computed over that user's samples only. Users whose samples are all one class have no AUC;
they are skipped and counted. Everything is vectorised: one sort, then per-user sums by bincount.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GAUC:
    value: float  # nan when no user has both classes
    users: int  # users that entered the average
    skipped_users: int  # users with a single class


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score  # here, not at the top: reports need GAUC only, and sklearn takes a second to import

    return float(roc_auc_score(labels, scores))


def gauc_parts(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user pieces of GAUC: (sorted user ids, impressions per user, AUC per user or NaN).

    AUC_u is NaN for users whose samples are all one class. Ties in score count one half.
    """
    users = np.asarray(users)
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    n = len(users)
    if n == 0:
        return users[:0], np.zeros(0), np.zeros(0)
    order = np.lexsort((scores, users))  # by user, then score ascending
    u, s, y = users[order], scores[order], labels[order]

    new_user = np.r_[True, u[1:] != u[:-1]]
    user_of = np.cumsum(new_user) - 1  # [n] dense user index
    user_first = np.flatnonzero(new_user)  # [U] first sorted position of each user

    # Average rank of tied scores within a user: ties form runs in sorted order.
    new_run = new_user | np.r_[True, s[1:] != s[:-1]]
    run_of = np.cumsum(new_run) - 1
    run_first = np.flatnonzero(new_run)
    run_size = np.diff(np.r_[run_first, n])
    rank = run_first[run_of] + (run_size[run_of] + 1) / 2.0 - user_first[user_of]  # 1-based in user

    n_all = np.bincount(user_of).astype(np.float64)
    n_pos = np.bincount(user_of, weights=y)
    n_neg = n_all - n_pos
    rank_pos = np.bincount(user_of, weights=rank * y)
    ok = (n_pos > 0) & (n_neg > 0)
    auc_u = np.full(len(n_all), np.nan)
    auc_u[ok] = (rank_pos[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2.0) / (n_pos[ok] * n_neg[ok])
    return u[user_first], n_all, auc_u


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> GAUC:
    """Impression-weighted mean of per-user AUCs. Ties in score count one half, as in AUC."""
    if len(users) == 0:
        return GAUC(float("nan"), 0, 0)
    _, n_all, auc_u = gauc_parts(users, labels, scores)
    ok = np.isfinite(auc_u)
    if not ok.any():
        return GAUC(float("nan"), 0, int(len(n_all)))
    value = float(np.sum(n_all[ok] * auc_u[ok]) / np.sum(n_all[ok]))
    return GAUC(value, int(ok.sum()), int((~ok).sum()))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def evaluate(users: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    g = gauc(users, labels, probs)
    return {
        "auc": auc(labels, probs),
        "gauc": g.value,
        "logloss": logloss(labels, probs),
        "gauc_users": g.users,
        "gauc_skipped_users": g.skipped_users,
    }
