"""Test GAUC by history-length bucket: where does attention pay off?

Three panels sharing the buckets: the poolers' test GAUC (mean ± std over seeds), their difference
to the baseline pooler with a 95% CI over seeds (paired by seed), and the test users per bucket.
``none`` (no history) sits far below the rest (0.67-0.77 against 0.97-0.99 on synthetic), so it is
left off the GAUC axes, which would otherwise squeeze the poolers that matter into one band; its
values stay in the table and in a note on the figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dinbench import analysis, poolers
from dinbench.figures.base import Figure, Group
from dinbench.plots import pyplot, save, style
from dinbench.tables import md_table

APART = ("none",)  # poolers kept off the GAUC axes (a floor, not a contender)


def baseline_of(names) -> str | None:
    """The pooler differences are taken to: the report's baseline when it ran, else the first of the
    others (None when there is nothing to compare)."""
    names = [n for n in names if n not in APART]
    if poolers.BASELINE in names:
        return poolers.BASELINE
    return names[0] if len(names) > 1 else None


class GaucByLength(Figure):
    name = "gauc-by-length"
    step = "GAUC by history length"
    caption = ("Test GAUC by history-length bucket (mean ± std over seeds); below it, each pooler's difference to "
               "the baseline pooler with its 95% CI over seeds (paired by seed), then the number of test users per "
               "bucket. `none` (no history) is far below the rest and is left off the GAUC axes: see the table.")

    def compute(self, group: Group) -> tuple[pd.DataFrame, pd.DataFrame, str | None] | None:
        per_run = analysis.gauc_by_length_per_run(group.runs)
        if per_run.empty:
            return None
        by_len = analysis.gauc_by_length(group.runs)
        baseline = baseline_of(sorted(by_len["pooler"].unique()))
        gain = analysis.length_gain(per_run, baseline) if baseline is not None else None
        return by_len, gain, baseline

    def draw(self, data, stem: Path, group: Group) -> list[Path]:
        by_len, gain, baseline = data
        return save(gauc_by_length_figure(by_len, gain, baseline, f"Test GAUC by history length ({group.dataset})"),
                    stem)

    def table(self, data) -> tuple[str, str]:
        by_len = data[0]
        wide = by_len.pivot(index="pooler", columns="bucket", values="gauc_mean")
        wide = wide[[b for b in analysis.bucket_order() if b in wide.columns]]
        users = by_len.groupby("bucket")["users"].max()
        rows = [[p, *(f"{v:.4f}" if np.isfinite(v) else "—" for v in wide.loc[p])] for p in wide.index]
        rows.append(["(test users)", *(f"{int(users[b]):,}" for b in wide.columns)])
        return "Test GAUC by history length (mean over seeds)", md_table(["pooler", *wide.columns], rows)


def plot_gauc_by_length(table: pd.DataFrame, stem: Path, title: str = "", gain: pd.DataFrame | None = None,
                        baseline: str | None = None) -> list[Path]:
    """``gauc_by_length_figure`` saved as ``stem``.png and .svg."""
    return save(gauc_by_length_figure(table, gain, baseline, title), stem)


def gauc_by_length_figure(table: pd.DataFrame, gain: pd.DataFrame | None, baseline: str | None, title: str = ""):
    """The figure (``table``: ``analysis.gauc_by_length``; ``gain``: ``analysis.length_gain`` against
    ``baseline``, or None for no difference panel)."""
    plt = pyplot()
    order = [b for b in analysis.bucket_order() if b in set(table["bucket"])]
    x = {b: i for i, b in enumerate(order)}
    shown = table[~table["pooler"].isin(APART)]
    apart = table[table["pooler"].isin(APART)]
    names = sorted(shown["pooler"].unique())
    colours = style(names)
    with_gain = gain is not None and not gain[~gain["pooler"].isin(APART)].empty
    many = len(names) > 6  # legend beside the axes instead of over the lines
    ratios = [3, 2, 1] if with_gain else [3, 1]
    fig, axes = plt.subplots(len(ratios), 1, figsize=(6.6 if many else 5.4, 6.2 if with_gain else 4.2), sharex=True,
                             gridspec_kw={"height_ratios": ratios}, layout="constrained")
    ax, bar = axes[0], axes[-1]
    dodge = dict(zip(names, np.linspace(-0.18, 0.18, len(names)) if len(names) > 1 else [0.0]))
    for pooler, g in shown.groupby("pooler", sort=True):
        c, m, ls = colours[pooler]
        g = g.sort_values("bucket", key=lambda s: s.map(x))
        ax.errorbar(g["bucket"].map(x).to_numpy() + dodge[pooler], g["gauc_mean"], yerr=g["gauc_std"].fillna(0),
                    color=c, marker=m, ls=ls, lw=1.6, ms=4.5, capsize=2, label=pooler)
    ax.set_ylabel("test GAUC")
    ax.set_title(title or "Test GAUC by history length")
    ax.grid(axis="y", alpha=0.3)
    if not apart.empty:  # said on the axes, so nobody looks for the missing line
        lo, hi = apart["gauc_mean"].min(), apart["gauc_mean"].max()
        ax.text(0.99, 0.02, f"not shown: {', '.join(sorted(apart['pooler'].unique()))} (no history), "
                f"GAUC {lo:.2f}-{hi:.2f}", transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="#444444")
    if with_gain:
        diff = axes[1]
        gain = gain[~gain["pooler"].isin(APART)]
        for pooler, g in gain.groupby("pooler", sort=True):
            c, m, ls = colours.get(pooler, style([pooler])[pooler])
            g = g.sort_values("bucket", key=lambda s: s.map(x))
            low = (g["diff_mean"] - g["ci_low"]).fillna(0).clip(lower=0)
            high = (g["ci_high"] - g["diff_mean"]).fillna(0).clip(lower=0)
            diff.errorbar(g["bucket"].map(x).to_numpy() + dodge.get(pooler, 0.0), g["diff_mean"], yerr=[low, high],
                          color=c, marker=m, ls=ls, lw=1.6, ms=4.5, capsize=2)
        diff.axhline(0.0, color=colours[baseline][0] if baseline in colours else "#444444", lw=1.0)
        diff.set_ylabel(f"GAUC − {baseline}\n(95% CI)")
        diff.grid(axis="y", alpha=0.3)
    counts = table.groupby("bucket")["users"].max().reindex(order)
    bar.bar(range(len(order)), counts.to_numpy(), color="#999999")
    bar.set_ylabel("test users")
    bar.set_xticks(range(len(order)), order)
    bar.set_xlabel("history length (behaviours)")
    if many:
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(ncol=2, frameon=False)
    return fig
