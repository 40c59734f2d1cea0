"""The report's figures are readable: every axis labelled, ticks where values are read, `none` off
the GAUC axes, a difference-to-baseline panel, and no colour too faint for a line. Structural checks
on the matplotlib Figure objects (Agg), not on pixels."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from dinbench import analysis, plots
from dinbench.figures.gauc_by_length import baseline_of, gauc_by_length_figure
from dinbench.figures.intensity import intensity_figure

BUCKETS = analysis.bucket_order()[:4]
GAUC = {"none": 0.70, "average": 0.975, "din:none": 0.985, "dot:softmax": 0.98}


@pytest.fixture
def by_length():
    rows = [{"dataset": "d", "architecture": "ranking", "pooler": p, "bucket": b, "gauc_mean": g + 0.002 * i,
             "gauc_std": 0.001, "seeds": 3, "samples": 100, "users": 50 - i}
            for p, g in GAUC.items() for i, b in enumerate(BUCKETS)]
    return pd.DataFrame(rows)


def _gain(by_length, baseline="average"):
    base = by_length[by_length["pooler"] == baseline].set_index("bucket")["gauc_mean"]
    rows = [{"dataset": "d", "architecture": "ranking", "pooler": r.pooler, "bucket": r.bucket,
             "diff_mean": r.gauc_mean - base[r.bucket], "ci_low": r.gauc_mean - base[r.bucket] - 0.002,
             "ci_high": r.gauc_mean - base[r.bucket] + 0.002, "seeds": 3}
            for r in by_length.itertuples() if r.pooler != baseline]
    return pd.DataFrame(rows)


def _labels(ax):
    return [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()]


def test_gauc_by_length_keeps_none_off_the_gauc_axes_and_adds_the_difference_panel(by_length):
    fig = gauc_by_length_figure(by_length, _gain(by_length), "average", "t")
    fig.canvas.draw()
    main, diff, users = fig.axes
    lines = {t.get_text() for t in main.get_legend().get_texts()}
    assert lines == {"average", "din:none", "dot:softmax"}  # no 'none'
    low, high = main.get_ylim()
    assert low > 0.9 and high < 1.0  # the band of the poolers that matter fills the axis
    assert any("none" in t.get_text() and "0.70" in t.get_text() for t in main.texts)  # said where it went
    assert "average" in diff.get_ylabel() and "CI" in diff.get_ylabel()
    d_low, d_high = diff.get_ylim()
    assert d_low < 0 < d_high and d_high < 0.05  # din:none's +0.01 and the zero line, not none's -0.28
    assert len(diff.lines) >= 1 + 2  # the zero line and one line per compared pooler (din:none, dot:softmax)
    for ax in fig.axes:
        assert ax.get_ylabel(), ax
        assert all(_labels(ax)[1]), ax
    assert users.get_xlabel() == "history length (behaviours)"
    assert _labels(users)[0] == BUCKETS


def test_gauc_by_length_without_a_baseline_has_two_panels(by_length):
    fig = gauc_by_length_figure(by_length, None, None)
    assert len(fig.axes) == 2 and all(ax.get_ylabel() for ax in fig.axes)


def test_the_baseline_is_the_reports_else_another_contender():
    assert baseline_of(["none", "average", "din:none"]) == "average"
    assert baseline_of(["none", "din:none", "dot:softmax"]) == "din:none"
    assert baseline_of(["none", "din:none"]) is None  # nothing to compare with


def test_intensity_panels_are_labelled_and_ticked():
    rng = np.random.default_rng(0)
    names = ["din:none", "dot:none", "bilinear:none", "multihead:none"]
    samples = pd.DataFrame([{"dataset": "d", "architecture": "ranking", "pooler": p,
                             "attention_sum": rng.normal(size=200), "label": np.tile([0, 1], 100)} for p in names])
    summary = pd.DataFrame([{"dataset": "d", "architecture": "ranking", "pooler": p, "auc_mean": 0.6, "auc_std": 0.01}
                            for p in names])
    fig = intensity_figure(samples, summary, "t")
    fig.canvas.draw()
    assert len(fig.axes) == 4  # 4 panels on a 2 x 3 grid: the two empty cells are gone, not blank frames
    for ax in fig.axes:
        xt, yt = _labels(ax)
        assert ax.get_xlabel() == "sum of attention weights" and ax.get_ylabel() == "density"
        assert len(yt) >= 2 and all(yt) and all(xt)
    assert fig.get_layout_engine() is not None  # laid out to fit (constrained), not fixed margins


def _contrast_on_white(colour: str) -> float:
    rgb = np.array(mcolors.to_rgb(colour))
    lin = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return 1.05 / (float(lin @ [0.2126, 0.7152, 0.0722]) + 0.05)


def test_pooler_colours_are_distinct_and_none_is_faint():
    assert len(set(plots.PALETTE)) == len(plots.PALETTE) >= 16
    assert _contrast_on_white("#F0E442") < 1.5  # the yellow that was there
    assert all(_contrast_on_white(c) >= 2.0 for c in plots.PALETTE), [
        (c, round(_contrast_on_white(c), 2)) for c in plots.PALETTE]
    from dinbench import poolers

    looks = plots.style(poolers.expand("all"))
    assert len({c for c, _, _ in looks.values()}) == len(looks)


def test_length_gain_pairs_by_seed():
    from dinbench.stats import mean_ci

    rows = [("average", 0, 0.90), ("average", 1, 0.92), ("average", 2, 0.91),
            ("din:none", 0, 0.93), ("din:none", 1, 0.93), ("din:none", 3, 0.99)]  # seed 3 has no pair
    per_run = pd.DataFrame([{"dataset": "d", "architecture": "ranking", "pooler": p, "seed": s, "bucket": "1-4",
                             "gauc": g, "samples": 1, "users": 1} for p, s, g in rows])
    gain = analysis.length_gain(per_run, "average")
    assert list(gain["pooler"]) == ["din:none"]
    r = gain.iloc[0]
    mean, _, low, high = mean_ci([0.03, 0.01])
    assert r["seeds"] == 2 and r["diff_mean"] == pytest.approx(mean)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
