"""The report's figures, drawn with matplotlib (Agg: no display needed), saved as PNG and SVG.

Each ``plot_*`` takes the DataFrame of the matching ``dinbench.analysis`` function and a path
stem, writes ``stem.png`` (200 dpi) and ``stem.svg`` atomically and returns both paths. Sizes fit
a one-column paper figure at 9-10 pt text; colours are the colour-blind-safe Okabe-Ito set, and a
pooler keeps its colour in every figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dinbench.analysis import CHANCE, bucket_order
from dinbench.atomic import write_atomic

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
# 16 distinct colours for up to 16 poolers: Okabe-Ito, then Paul Tol's darker "muted" tones
PALETTE = OKABE_ITO + ["#882255", "#332288", "#117733", "#999933", "#AA4499", "#44AA99", "#661100", "#6699CC"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 7.5,
                         "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
                         "axes.spines.right": False, "svg.hashsalt": "dinbench", "svg.fonttype": "none"})
    return plt


def style(names) -> dict[str, tuple[str, str, str]]:
    """pooler -> (colour, marker, line style), fixed by the pooler's place in ``--pooler all``, so a
    pooler has the same look in every figure (16 colours; markers repeat past eight, lines then dashed)."""
    from dinbench import poolers

    order = {p: i for i, p in enumerate(poolers.expand("all"))}
    out = {}
    for p in names:
        i = order.get(p, len(order) + sorted(names).index(p))
        out[p] = (PALETTE[i % len(PALETTE)], MARKERS[i % 8], "-" if (i // 8) % 2 == 0 else "--")
    return out


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, kw in (("png", {"dpi": 200}), ("svg", {"metadata": {"Date": None}})):
        path = stem.with_suffix(f".{ext}")
        write_atomic(path, lambda tmp, ext=ext, kw=kw: fig.savefig(tmp, format=ext, bbox_inches="tight", **kw))
        paths.append(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def plot_gauc_by_length(table: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Test GAUC (mean ± std over seeds) per history-length bucket, one line per pooler."""
    plt = _pyplot()
    order = [b for b in bucket_order() if b in set(table["bucket"])]
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
    return _save(fig, stem)


def plot_learning_curves(curves: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Valid GAUC per epoch: a line per seed, the selected epoch of each run as a marker.

    Up to six poolers share one panel; more get one small panel each (same axes), so 14 poolers x
    3 seeds stay readable.
    """
    plt = _pyplot()
    names = sorted(curves["pooler"].unique())
    colours = style(names)
    panels = [names] if len(names) <= 6 else [[p] for p in names]
    cols = min(len(panels), 4)
    rows = int(np.ceil(len(panels) / cols))
    size = (5.0, 3.4) if len(panels) == 1 else (1.75 * cols + 0.5, 1.45 * rows + 0.6)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, sharex=True, sharey=True)
    for ax, group in zip(axes.flat, panels):
        for pooler in group:
            g = curves[curves["pooler"] == pooler]
            c, m, ls = colours[pooler]
            for i, (_, run) in enumerate(g.groupby("run_id", sort=True)):
                run = run.sort_values("epoch")
                ax.plot(run["epoch"], run["valid_gauc"], color=c, ls=ls, lw=1.0, alpha=0.8,
                        label=pooler if i == 0 else None)
                sel = run[run["selected"]]
                ax.plot(sel["epoch"], sel["valid_gauc"], color=c, marker=m, ms=4, ls="none")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(panels) > 1:
            ax.set_title(group[0], fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if len(panels) == 1:
        axes[0, 0].legend(ncol=2, frameon=False)
        axes[0, 0].set_xlabel("epoch")
        axes[0, 0].set_ylabel("valid GAUC")
    else:
        fig.supxlabel("epoch", fontsize=9)
        fig.supylabel("valid GAUC", fontsize=9)
    fig.suptitle(title or "Learning curves", fontsize=10)
    fig.text(0.5, -0.02, "line: one seed; marker: the epoch selected on valid", ha="center", fontsize=7.5)
    fig.tight_layout()
    return _save(fig, stem)


def plot_attention_case(case: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """The case study: history items (oldest at the top) and the weight each candidate gives them.

    One panel per candidate; bars of items in the candidate's category are highlighted.
    """
    plt = _pyplot()
    cands = ["clicked", "not clicked"]
    n = int(case["position"].max()) + 1
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 0.9 + 0.22 * n), sharey=True, sharex=True)
    for ax, cand in zip(axes, cands):
        g = case[case["candidate"] == cand].sort_values("position")
        if g.empty:
            ax.set_visible(False)
            continue
        colours = np.where(g["same_category"], OKABE_ITO[3], "#9a9a9a")
        ax.barh(g["position"], g["weight"], color=colours)
        ax.axvline(0, color="black", lw=0.6)
        head = g.iloc[0]
        ax.set_title(f"candidate {cand}: item {head['candidate_item']}\n(category {head['candidate_category']})",
                     fontsize=8.5)
        ax.set_xlabel("attention weight")
    labels = case[case["candidate"] == cands[0]].sort_values("position")
    axes[0].set_yticks(labels["position"], [f"{i} ({c})" for i, c in zip(labels["item"], labels["category"])])
    axes[0].invert_yaxis()
    axes[0].set_ylabel("history: item (category), oldest first")
    fig.suptitle(title or f"Attention case study, user {case['user'].iloc[0]}", fontsize=10)
    fig.text(0.5, -0.01, "highlighted: history items in the candidate's category", ha="center", fontsize=7.5)
    fig.tight_layout()
    return _save(fig, stem)


def plot_intensity(samples: pd.DataFrame, summary: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Distribution of the summed attention weight for clicked vs not-clicked candidates, one panel
    per pooler, with the AUC of that sum alone (mean ± std over seeds) in the panel's title."""
    plt = _pyplot()
    k = len(samples)
    cols = min(k, 3)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols + 0.4, 2.1 * rows + 0.3), squeeze=False)
    for ax, (_, s) in zip(axes.flat, samples.iterrows()):
        values, label = np.asarray(s["attention_sum"]), np.asarray(s["label"])
        lo, hi = np.percentile(values, [0.5, 99.5])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        ax.hist(values[label == 1], bins=bins, density=True, alpha=0.6, color=OKABE_ITO[0], label="clicked")
        ax.hist(values[label == 0], bins=bins, density=True, alpha=0.6, color=OKABE_ITO[1], label="not clicked")
        row = summary[(summary["pooler"] == s["pooler"]) & (summary["architecture"] == s["architecture"])
                      & (summary["dataset"] == s["dataset"])]
        auc_txt = ""
        if not row.empty:
            r = row.iloc[0]
            auc_txt = f"\nAUC of the sum {r['auc_mean']:.3f}" + (f" ± {r['auc_std']:.3f}" if np.isfinite(r["auc_std"]) else "")
        ax.set_title(f"{s['pooler']}{auc_txt}", fontsize=8.5)
        ax.set_xlabel("sum of attention weights")
        ax.set_yticks([])
    for ax in list(axes.flat)[k:]:
        ax.set_visible(False)
    axes.flat[0].legend(frameon=False)
    fig.suptitle(title or "Interest intensity: summed unnormalised attention", fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)


def plot_relevant_attention(table: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Per pooler: relevance AUC of its weights (mean ± std over seeds) against chance 0.5."""
    plt = _pyplot()
    table = table.sort_values("relevance_auc_mean")
    fig, ax = plt.subplots(figsize=(5.0, 0.6 + 0.3 * len(table)))
    colours = style(list(table["pooler"]))
    ax.barh(range(len(table)), table["relevance_auc_mean"], xerr=table["relevance_auc_std"].fillna(0),
            color=[colours[p][0] for p in table["pooler"]], capsize=2)
    ax.axvline(CHANCE, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(table)), table["pooler"])
    ax.set_xlim(min(0.3, float(table["relevance_auc_mean"].min()) - 0.05), 1.0)
    ax.set_xlabel("P(relevant history item outweighs an unrelated one); dashed: 0.5, blind")
    ax.set_title(title or "Attention on the truly relevant history items (synthetic)")
    fig.tight_layout()
    return _save(fig, stem)
