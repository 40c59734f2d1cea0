"""dinbench.stats and the statistics columns of `dinbench report`; saved predictions of a run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dinbench import metrics, report, stats
from dinbench.metrics import gauc
from dinbench.config import RunConfig
from dinbench.train import train_run


def test_mean_ci_hand_computed():
    # values 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653; half width = 4.302653 / sqrt(3)
    mean, sd, lo, hi = stats.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and sd == 1.0
    half = 4.302652729911275 / math.sqrt(3)
    assert lo == pytest.approx(2 - half, abs=1e-9) and hi == pytest.approx(2 + half, abs=1e-9)
    assert all(math.isnan(v) for v in stats.mean_ci([0.7])[1:])


@pytest.mark.parametrize("t,df,p", [(2.0, 5, 0.1019), (2.228, 10, 0.05), (1.0, 1, 0.5), (0.0, 7, 1.0),
                                    (-2.0, 5, 0.1019), (12.706, 1, 0.05), (3.0, 30, 0.005364)])
def test_t_two_sided_p_known_values(t, df, p):
    assert stats.t_two_sided_p(t, df) == pytest.approx(p, abs=2e-4)


@pytest.mark.parametrize("df,q", [(1, 12.7062), (2, 4.3027), (5, 2.5706), (10, 2.2281), (30, 2.0423), (10**6, 1.9600)])
def test_t_quantile_matches_table(df, q):
    assert stats.t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    assert stats.t_cdf(stats.t_quantile(0.975, df), df) == pytest.approx(0.975, abs=1e-10)


def test_betainc_known_values():
    assert stats.betainc(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert stats.betainc(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-4)
    assert stats.t_cdf(-1.0, 3) == pytest.approx(0.195501, abs=1e-6)


def test_paired_t_pvalue():
    a, b = [0.72, 0.74, 0.73], [0.70, 0.71, 0.705]
    d = np.subtract(a, b)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    assert stats.paired_t_pvalue(a, b) == pytest.approx(stats.t_two_sided_p(t, 2))
    assert math.isnan(stats.paired_t_pvalue([0.7], [0.6]))
    assert stats.paired_t_pvalue(a, a) == 1.0


def _constructed(n_users=300, per_user=10, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    labels = rng.integers(0, 2, users.size).astype(float)
    good = labels + rng.normal(0, 0.5, users.size)  # clearly informative
    bad = rng.normal(0, 1, users.size)  # noise
    return users, labels, good, bad


def test_bootstrap_clear_winner_and_identical():
    users, labels, good, bad = _constructed()
    diff, p = stats.paired_bootstrap_gauc(users, labels, good, bad, n_boot=1000)
    assert diff == pytest.approx(gauc(users, labels, good).value - gauc(users, labels, bad).value)
    assert diff > 0.2 and p < 0.01
    diff, p = stats.paired_bootstrap_gauc(users, labels, good, good.copy(), n_boot=1000)
    assert diff == 0.0 and p == 1.0


def test_ranks_ties_share_the_best():
    assert stats.rank_desc([0.7, 0.9, 0.8, 0.9, np.nan]).tolist() == [4, 1, 3, 1, 5]


def _runs(rows):
    base = dict(dataset="d", fingerprint="f", protocol="din", config="c", architecture="ranking", logloss=0.5,
                best_epoch=1, rows_per_s=1.0, wall_seconds=1.0)
    return pd.DataFrame([{**base, "run_id": f"r{i}", **r} for i, r in enumerate(rows)])


def test_summarize_statistics_columns_and_outputs(tmp_path):
    users, labels, good, bad = _constructed()
    files = {}
    for name, s in (("good", good), ("bad", bad)):
        files[name] = str(tmp_path / f"{name}.parquet")
        pd.DataFrame({"user": users, "label": labels, "score": s}).to_parquet(files[name])
    runs = _runs([
        dict(pooler="average", seed=0, auc=0.6, gauc=0.60, predictions=files["bad"]),
        dict(pooler="average", seed=1, auc=0.6, gauc=0.61, predictions=None),
        dict(pooler="average", seed=2, auc=0.6, gauc=0.62, predictions=None),
        dict(pooler="din", seed=0, auc=0.8, gauc=0.80, predictions=files["good"]),
        dict(pooler="din", seed=1, auc=0.8, gauc=0.82, predictions=None),
        dict(pooler="din", seed=2, auc=0.8, gauc=0.81, predictions=None),
        dict(pooler="sum", seed=0, auc=0.6, gauc=0.605, predictions=None),
        dict(pooler="sum", seed=1, auc=0.6, gauc=0.605, predictions=None),
        dict(pooler="sum", seed=2, auc=0.6, gauc=0.625, predictions=None),
    ])
    t = report.summarize(runs, baseline="average").set_index("pooler")
    assert t["rank"].to_dict() == {"din": 1, "sum": 2, "average": 3}
    _, _, lo, hi = stats.mean_ci([0.80, 0.82, 0.81])
    assert t.loc["din", "gauc_ci_low"] == pytest.approx(lo) and t.loc["din", "gauc_ci_high"] == pytest.approx(hi)
    assert t.loc["din", "p_seeds"] < 0.05 and t.loc["din", "p_bootstrap"] < 0.01
    assert t.loc["din", "vs_baseline"] == "better"
    assert t.loc["sum", "p_seeds"] >= 0.05 and math.isnan(t.loc["sum", "p_bootstrap"])
    assert t.loc["sum", "vs_baseline"] == "≈ baseline"
    assert math.isnan(t.loc["average", "p_seeds"]) and t.loc["average", "vs_baseline"] == "baseline"
    table = report.summarize(runs, baseline="average")
    md = report.render(table, "markdown", "average")
    assert "p (bootstrap)" in md and "≈ baseline" in md and "| — |" in md
    for fmt in ("csv", "json"):
        text = report.render(table, fmt, "average")
        assert all(c in text for c in ("gauc_ci_low", "rank", "p_seeds", "p_bootstrap", "vs_baseline"))
    assert r"$\approx$ baseline" in report.render(table, "latex", "average")
    # against the top pooler: din is best; average and sum are clearly below it over seeds
    assert t.loc["din", "vs_best"] == "best"
    assert t.loc["average", "vs_best"].startswith("below best (p ")
    assert t.loc["sum", "vs_best"].startswith("below best (p ")


def test_a_pooler_tied_with_the_top_is_flagged_not_hidden():
    runs = _runs([
        dict(pooler="din:softmax", seed=s, auc=0.8, gauc=g, predictions=None) for s, g in enumerate((0.80, 0.82, 0.79))
    ] + [
        dict(pooler="din:none", seed=s, auc=0.8, gauc=g, predictions=None) for s, g in enumerate((0.81, 0.80, 0.795))
    ] + [
        dict(pooler="average", seed=s, auc=0.7, gauc=g, predictions=None) for s, g in enumerate((0.70, 0.71, 0.705))
    ])
    t = report.summarize(runs, baseline="average").set_index("pooler")
    assert t.loc["din:softmax", "vs_best"] == "best"
    assert t.loc["din:none", "vs_best"].startswith("≈ best (p ")  # within seed noise of the top
    assert t.loc["average", "vs_best"].startswith("below best")


def test_train_run_saves_predictions_that_reproduce_test_gauc(tiny, tmp_path):
    cfg = RunConfig(pooler="din", epochs=2, embedding_dim=8, batch_size=128, device="cpu")
    run_dir, record = train_run(cfg, tiny, tmp_path / "results")
    assert record["predictions"] == {"test": "predictions_test.parquet", "valid": "predictions_valid.parquet"}
    test = pd.read_parquet(run_dir / "predictions_test.parquet")
    assert list(test.columns) == ["user", "label", "score", "hist_len", "attention_sum"]
    assert len(test) == len(tiny.splits["test"])
    assert gauc(test["user"], test["label"], test["score"]).value == pytest.approx(record["test"]["gauc"], abs=1e-12)
    valid = pd.read_parquet(run_dir / "predictions_valid.parquet")
    best = record["epochs"][record["best_epoch"] - 1]["valid"]["gauc"]
    assert gauc(valid["user"], valid["label"], valid["score"]).value == pytest.approx(best, abs=1e-12)
    assert test["attention_sum"].notna().all()
    # a pooler without weights: NaN; the paper protocol has no valid split
    run_dir, record = train_run(RunConfig(pooler="max", epochs=1, embedding_dim=8, protocol="paper", device="cpu"),
                                tiny, tmp_path / "results")
    assert "valid" not in record["predictions"] and not (run_dir / "predictions_valid.parquet").exists()
    assert pd.read_parquet(run_dir / "predictions_test.parquet")["attention_sum"].isna().all()
    # report reads the files back: the bootstrap runs
    from dinbench.records import load_records
    loaded, _ = load_records(tmp_path / "results")
    frame = report.runs_frame(loaded)
    assert frame["predictions"].notna().all()


def test_bootstrapping_pairs_together_gives_each_pair_its_own_p_exactly():
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(400), 3)
    labels = np.tile([1.0, 0.0, 0.0], 400)
    base = rng.random(users.size)
    others = [base + k * 0.05 * labels + rng.normal(0, 0.3, users.size) for k in range(4)]
    alone = [stats.paired_bootstrap_gauc(users, labels, o, base, n_boot=300, seed=5) for o in others]
    _, w, auc_base = metrics.gauc_parts(users, labels, base)
    pairs = [(metrics.gauc_parts(users, labels, o)[2], auc_base) for o in others]
    together = stats.paired_bootstrap_many(w, pairs, n_boot=300, seed=5)
    assert together == alone  # the same draws: identical differences and p-values
    assert len({p for _, p in alone}) > 1  # and the pairs really differ
