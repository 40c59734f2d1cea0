"""Statistics for ``dinbench report``, with numpy and the standard library only (no scipy).

- Student t distribution: CDF through the regularized incomplete beta function (Lentz continued
  fraction, as in Numerical Recipes ``betacf``), quantiles by bisection on that CDF.
- Confidence interval of a mean over seeds (Student t).
- Paired t-test over seeds (two-sided).
- Paired bootstrap over test users of a GAUC difference, vectorised: per-user AUC contributions
  are computed once, each bootstrap replicate is a weighted sum with multinomial user counts.
"""

from __future__ import annotations

import math

import numpy as np

from dinbench.metrics import gauc_parts


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float, max_iter: int = 500, eps: float = 1e-15) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return float("nan")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value P(|T| >= |t|)."""
    if math.isnan(t):
        return float("nan")
    if math.isinf(t):
        return 0.0
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on t_cdf; accurate to ~1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, CI low, CI high) over ``values`` (seeds); the CI is NaN with fewer than 2."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (float("nan"),) * 4
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(x.std(ddof=1))
    half = t_quantile(0.5 + level / 2.0, x.size - 1) * std / math.sqrt(x.size)
    return mean, std, mean - half, mean + half


def paired_t_pvalue(a, b) -> float:
    """Two-sided paired t-test of mean(a - b) = 0 over paired values (seeds); NaN with < 2 pairs."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return float("nan")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return t_two_sided_p(mean / (sd / math.sqrt(d.size)), d.size - 1)


def paired_bootstrap_gauc(
    users, labels, scores_a, scores_b, n_boot: int = 1000, seed: int = 0, chunk: int = 100
) -> tuple[float, float]:
    """Paired bootstrap over users of GAUC(a) - GAUC(b) on the same samples.

    Users are resampled with replacement ``n_boot`` times; a resampled user enters with all its
    samples. Returns ``(observed difference, two-sided p)``, with p = 2 * the share of replicates on
    the other side of 0 (replicates equal to 0 count on both sides), capped at 1. Identical
    predictions give p = 1.
    """
    ids_a, w, auc_a = gauc_parts(users, labels, scores_a)
    ids_b, _, auc_b = gauc_parts(users, labels, scores_b)
    if not np.array_equal(ids_a, ids_b):  # pragma: no cover - same users/labels by construction
        raise ValueError("the two predictions are not over the same users")
    ok = np.isfinite(auc_a) & np.isfinite(auc_b)
    if not ok.any():
        return float("nan"), float("nan")
    return paired_bootstrap_many(w[ok], [(auc_a[ok], auc_b[ok])], n_boot=n_boot, seed=seed, chunk=chunk)[0]


def paired_bootstrap_many(
    w, pairs, n_boot: int = 1000, seed: int = 0, chunk: int = 100
) -> list[tuple[float, float]]:
    """``paired_bootstrap_gauc`` for several pairs over the same users at once.

    ``w``: impressions per user [U] (users with a finite AUC in every pair); ``pairs``: (AUC_u of a,
    AUC_u of b) per pair, each [U]. Every pair sees the same resamples, drawn once: exactly the
    numbers ``paired_bootstrap_gauc`` gives each pair on its own (same seed, same draws), for the
    cost of one draw.
    """
    w = np.asarray(w, dtype=np.float64)
    n_users = w.size
    if n_users == 0:
        return [(float("nan"), float("nan"))] * len(pairs)
    diffs = [w * np.asarray(a, dtype=np.float64) - w * np.asarray(b, dtype=np.float64) for a, b in pairs]
    observed = [float(((w * np.asarray(a)).sum() - (w * np.asarray(b)).sum()) / w.sum()) for a, b in pairs]
    # exact zero for identical predictions; tolerate float round-off around it
    tols = [1e-12 * max(1.0, float(np.abs(d).max())) for d in diffs]
    rng = np.random.default_rng(seed)
    probs = np.full(n_users, 1.0 / n_users)
    below, above = [0] * len(pairs), [0] * len(pairs)
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        counts = rng.multinomial(n_users, probs, size=k).astype(np.float64)  # [k, U]
        weight = counts @ w
        for i, diff_c in enumerate(diffs):
            d = (counts @ diff_c) / weight
            below[i] += int(np.sum(d <= tols[i]))
            above[i] += int(np.sum(d >= -tols[i]))
    return [(obs, min(1.0, 2.0 * min(lo, hi) / n_boot)) for obs, lo, hi in zip(observed, below, above)]


def rank_desc(values) -> np.ndarray:
    """Competition ranks (1 = largest; ties share the best rank) of ``values``; NaN ranks last."""
    x = np.asarray(values, dtype=np.float64)
    key = np.where(np.isfinite(x), -x, np.inf)
    return np.array([1 + int(np.sum(key < k)) for k in key], dtype=np.int64)
