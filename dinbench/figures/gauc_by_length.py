"""Test GAUC by history-length bucket: where does attention pay off?"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dinbench import analysis
from dinbench.figures.base import Figure, Group
from dinbench.plots import pyplot, save, style
from dinbench.tables import md_table


class GaucByLength(Figure):
    name = "gauc-by-length"
    step = "GAUC by history length"
    caption = "Test GAUC by history-length bucket (mean ± std over seeds); below, the number of test users per bucket."

    def compute(self, group: Group) -> pd.DataFrame | None:
        by_len = analysis.gauc_by_length(group.runs)
        return None if by_len.empty else by_len

    def draw(self, data: pd.DataFrame, stem: Path, group: Group) -> list[Path]:
        return plot_gauc_by_length(data, stem, f"Test GAUC by history length ({group.dataset})")

    def table(self, data: pd.DataFrame) -> tuple[str, str]:
        wide = data.pivot(index="pooler", columns="bucket", values="gauc_mean")
        wide = wide[[b for b in analysis.bucket_order() if b in wide.columns]]
        users = data.groupby("bucket")["users"].max()
        rows = [[p, *(f"{v:.4f}" if np.isfinite(v) else "—" for v in wide.loc[p])] for p in wide.index]
        rows.append(["(test users)", *(f"{int(users[b]):,}" for b in wide.columns)])
        return "Test GAUC by history length (mean over seeds)", md_table(["pooler", *wide.columns], rows)


def plot_gauc_by_length(table: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Test GAUC (mean ± std over seeds) per history-length bucket, one line per pooler
    (``table``: ``analysis.gauc_by_length``), with the test users per bucket as bars below."""
    plt = pyplot()
    order = [b for b in analysis.bucket_order() if b in set(table["bucket"])]
    x = {b: i for i, b in enumerate(order)}
    colours = style(list(table["pooler"].unique()))
    names = sorted(table["pooler"].unique())
    many = len(names) > 6  # legend beside the axes instead of over the lines
    fig, (ax, bar) = plt.subplots(2, 1, figsize=(6.4 if many else 5.0, 4.2), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    dodge = np.linspace(-0.18, 0.18, len(names)) if len(names) > 1 else np.zeros(1)  # error bars side by side
    for k, (pooler, g) in enumerate(table.groupby("pooler", sort=True)):
        c, m, ls = colours[pooler]
        g = g.sort_values("bucket", key=lambda s: s.map(x))
        xs = g["bucket"].map(x).to_numpy() + dodge[k]
        ax.errorbar(xs, g["gauc_mean"], yerr=g["gauc_std"].fillna(0), color=c, marker=m, ls=ls, lw=1.2, ms=4,
                    capsize=2, label=pooler)
    counts = table.groupby("bucket")["users"].max().reindex(order)
    bar.bar(range(len(order)), counts.to_numpy(), color="#999999")
    bar.set_ylabel("test users")
    bar.set_xticks(range(len(order)), order)
    bar.set_xlabel("history length (behaviours)")
    ax.set_ylabel("test GAUC")
    ax.set_title(title or "Test GAUC by history length")
    ax.grid(axis="y", alpha=0.3)
    if many:
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(ncol=2, frameon=False)
    fig.tight_layout()
    return save(fig, stem)
