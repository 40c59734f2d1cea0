"""AUC, GAUC and logloss against brute force and hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dinbench import metrics


def brute_force_gauc(users, labels, scores):
    """Loop over users, sklearn AUC per user, weight = the user's number of samples."""
    num = den = 0.0
    used = skipped = 0
    for u in np.unique(users):
        sel = users == u
        y, s = labels[sel], scores[sel]
        if y.min() == y.max():
            skipped += 1
            continue
        num += sel.sum() * roc_auc_score(y, s)
        den += sel.sum()
        used += 1
    return (num / den if den else float("nan")), used, skipped


@pytest.mark.parametrize("seed", range(6))
def test_gauc_matches_brute_force_per_user_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_users = 60
    sizes = rng.integers(1, 12, size=n_users)
    users = np.repeat(rng.permutation(np.arange(1000, 1000 + n_users)), sizes)  # non-contiguous ids
    labels = rng.integers(0, 2, size=len(users))
    # A handful of users forced to a single class (all positive or all negative).
    for u in np.unique(users)[:8]:
        labels[users == u] = int(u) % 2
    # Scores on a coarse grid: many ties, within and across users.
    scores = rng.integers(0, 5, size=len(users)) / 4.0
    order = rng.permutation(len(users))  # samples not grouped by user
    users, labels, scores = users[order], labels[order], scores[order]

    expected, used, skipped = brute_force_gauc(users, labels, scores)
    got = metrics.gauc(users, labels, scores)
    assert skipped >= 8
    assert got.users == used
    assert got.skipped_users == skipped
    assert got.users + got.skipped_users == n_users
    assert abs(got.value - expected) <= 1e-12


def test_gauc_hand_computed():
    # user 7: pos 0.9 vs negs 0.5 (win) and 0.9 (tie, counts 1/2) -> AUC 0.75, 3 samples
    # user 3: pos 0.2 vs neg 0.8 (loss) -> AUC 0.0, 2 samples
    # user 5: positives only -> skipped
    users = np.array([7, 3, 7, 5, 7, 3, 5])
    labels = np.array([1, 0, 0, 1, 0, 1, 1])
    scores = np.array([0.9, 0.8, 0.5, 0.3, 0.9, 0.2, 0.1])
    g = metrics.gauc(users, labels, scores)
    assert g.value == pytest.approx((3 * 0.75 + 2 * 0.0) / 5, abs=1e-15)
    assert (g.users, g.skipped_users) == (2, 1)


def test_gauc_all_single_class_and_empty():
    g = metrics.gauc(np.array([1, 1, 2]), np.array([0, 0, 1]), np.array([0.1, 0.2, 0.3]))
    assert math.isnan(g.value) and (g.users, g.skipped_users) == (0, 2)
    g = metrics.gauc(np.array([]), np.array([]), np.array([]))
    assert math.isnan(g.value) and (g.users, g.skipped_users) == (0, 0)


def test_gauc_is_invariant_to_sample_order_and_monotone_score_transforms():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 20, size=300)
    labels = rng.integers(0, 2, size=300)
    scores = rng.random(300)
    base = metrics.gauc(users, labels, scores).value
    perm = rng.permutation(300)
    assert metrics.gauc(users[perm], labels[perm], scores[perm]).value == pytest.approx(base, abs=1e-12)
    assert metrics.gauc(users, labels, np.exp(3 * scores)).value == pytest.approx(base, abs=1e-12)


def test_auc_basic():
    y = np.array([0, 0, 1, 1])
    assert metrics.auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert metrics.auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert metrics.auc(y, np.full(4, 0.5)) == 0.5
    assert metrics.auc(y, np.array([0.1, 0.6, 0.4, 0.9])) == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    yy, ss = rng.integers(0, 2, 200), rng.integers(0, 7, 200)
    assert metrics.auc(yy, ss) == pytest.approx(roc_auc_score(yy, ss), abs=1e-15)


def test_auc_all_negative_is_nan():
    assert math.isnan(metrics.auc(np.zeros(5), np.arange(5)))
    assert math.isnan(metrics.auc(np.array([]), np.array([])))


def test_auc_all_positive_is_nan_without_calling_sklearn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's UndefinedMetricWarning would mean it was called
        assert math.isnan(metrics.auc(np.ones(5), np.arange(5)))


def test_logloss_basic():
    y = np.array([1, 0])
    p = np.array([0.8, 0.4])
    assert metrics.logloss(y, p) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2, abs=1e-12)
    assert metrics.logloss(np.array([1, 0, 1]), np.full(3, 0.5)) == pytest.approx(math.log(2), abs=1e-12)
    # Probabilities of exactly 0/1 are clipped: finite, and ~0 when they are right.
    assert metrics.logloss(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(0.0, abs=1e-6)
    wrong = metrics.logloss(np.array([1, 0]), np.array([0.0, 1.0]))
    assert math.isfinite(wrong) and wrong == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_evaluate_combines_all_metrics():
    users = np.array([1, 1, 2, 2, 3])
    labels = np.array([1, 0, 1, 0, 1])
    probs = np.array([0.7, 0.2, 0.4, 0.6, 0.9])
    out = metrics.evaluate(users, labels, probs)
    assert out["auc"] == pytest.approx(roc_auc_score(labels, probs))
    assert out["gauc"] == pytest.approx(0.5)  # user 1: 1.0, user 2: 0.0, equal weights
    assert out["logloss"] == pytest.approx(metrics.logloss(labels, probs))
    assert (out["gauc_users"], out["gauc_skipped_users"]) == (2, 1)
