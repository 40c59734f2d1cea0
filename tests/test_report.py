"""report.summarize: means and stds over seeds, RelaImpr against the baseline of the same scope."""

from __future__ import annotations

import math

import pandas as pd

from dinbench import report


def _runs(rows):
    base = dict(dataset="d", fingerprint="f", protocol="din", config="c", logloss=0.5, best_epoch=1,
                rows_per_s=1.0, wall_seconds=1.0, run_id="r")
    return pd.DataFrame([{**base, **r} for r in rows])


def test_relaimpr_formula_and_scope_by_architecture():
    runs = _runs([
        dict(architecture="ranking", pooler="average", seed=0, auc=0.7, gauc=0.7),
        dict(architecture="ranking", pooler="average", seed=1, auc=0.7, gauc=0.7),
        dict(architecture="ranking", pooler="din:none", seed=0, auc=0.75, gauc=0.72),
        dict(architecture="ranking", pooler="din:none", seed=1, auc=0.75, gauc=0.74),
        dict(architecture="two-tower", pooler="average", seed=0, auc=0.6, gauc=0.6),
        dict(architecture="two-tower", pooler="sum", seed=0, auc=0.65, gauc=0.65),
    ])
    t = report.summarize(runs, baseline="average").set_index(["architecture", "pooler"])
    din = t.loc[("ranking", "din:none")]
    assert din["seeds"] == 2 and math.isclose(din["gauc_mean"], 0.73)
    assert math.isclose(din["gauc_std"], pd.Series([0.72, 0.74]).std())  # sample std over seeds
    assert math.isclose(din["relaimpr_gauc"], ((0.73 - 0.5) / (0.7 - 0.5) - 1) * 100)
    # two-tower rows are compared with two-tower average, not with ranking average
    assert math.isclose(t.loc[("two-tower", "sum")]["relaimpr_gauc"], ((0.65 - 0.5) / (0.6 - 0.5) - 1) * 100)
    assert t.loc[("ranking", "average")]["relaimpr_gauc"] == 0.0


def test_one_seed_has_no_std_and_tables_show_the_mean_alone():
    runs = _runs([dict(architecture="ranking", pooler="average", seed=0, auc=0.7, gauc=0.71)])
    t = report.summarize(runs)
    assert math.isnan(t["gauc_std"].iloc[0])
    text = report.render(t, "markdown", "average")
    assert "0.7100 |" in text and "±" not in text.splitlines()[2]


def test_missing_baseline_gives_no_relaimpr():
    runs = _runs([dict(architecture="ranking", pooler="din:none", seed=0, auc=0.7, gauc=0.7)])
    assert math.isnan(report.summarize(runs, baseline="average")["relaimpr_gauc"].iloc[0])


def test_the_same_seed_run_twice_counts_once_and_the_latest_is_used():
    from dinbench.report import latest_per_seed

    base = {"dataset": "d", "protocol": "din", "config": "c", "architecture": "ranking", "pooler": "average"}
    runs = pd.DataFrame([
        {**base, "seed": 0, "run_id": "20260101-000000-a", "gauc": 0.70},
        {**base, "seed": 0, "run_id": "20260102-000000-b", "gauc": 0.80},
        {**base, "seed": 1, "run_id": "20260101-000000-c", "gauc": 0.75},
    ])
    kept, notes = latest_per_seed(runs)
    assert sorted(kept["gauc"]) == [0.75, 0.80]
    assert len(notes) == 1 and "seed 0: 2 runs" in notes[0] and "1 older" in notes[0]
    assert latest_per_seed(kept)[1] == []


def test_the_flag_follows_the_direction_of_the_tests_that_separate_the_two():
    # over 5 seeds `own` is level with `other` (+0.0001 on average, p ~ 1), but the one seed the
    # bootstrap uses is 0.007 lower with p 0.002: the flag must not say "better" from the means
    own = pd.DataFrame({"seed": range(5), "gauc": [0.7676, 0.7651, 0.7702, 0.7735, 0.7722]})
    other = pd.DataFrame({"seed": range(5), "gauc": [0.7748, 0.7701, 0.7680, 0.7700, 0.7652]})
    assert own["gauc"].mean() > other["gauc"].mean()
    ps, pb, flag = report.compare(own, other, 0.002, -0.0072)
    assert ps > 0.05 and pb == 0.002 and flag == "worse"
    assert report.compare(own, other, 0.002, +0.0072)[2] == "better"
    assert report.compare(own, other, 0.30, -0.0072)[2] == "≈"
    # the seeds separate them one way, the bootstrapped seed the other: "mixed"
    up = pd.DataFrame({"seed": range(5), "gauc": [0.780, 0.781, 0.782, 0.781, 0.780]})
    down = pd.DataFrame({"seed": range(5), "gauc": [0.770, 0.771, 0.771, 0.770, 0.772]})
    assert report.compare(up, down, 0.001, -0.004)[2] == "mixed"
    assert report.compare(up, down, 0.001, +0.004)[2] == "better"
    assert report.compare(up, down, float("nan"))[2] == "better"  # the seeds alone
