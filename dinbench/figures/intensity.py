"""Interest intensity: the summed (unnormalised) attention weight as a click predictor on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dinbench import analysis
from dinbench.figures.base import Figure, Group
from dinbench.plots import OKABE_ITO, pyplot, save
from dinbench.tables import md_table, pm


class Intensity(Figure):
    name = "intensity"
    step = "interest intensity"
    caption = ("Distribution of each test sample's summed attention weight (lowest seed), "
               "and the AUC of that sum alone as a click predictor.")

    def compute(self, group: Group) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        summary, samples = analysis.intensity(group.runs)
        if samples.empty:
            if group.attention_poolers:
                group.section.notes.append("no interest-intensity figure: no run here has unnormalised attention weights")
            return None
        return summary, samples

    def draw(self, data, stem: Path, group: Group) -> list[Path]:
        summary, samples = data
        return plot_intensity(samples, summary, stem, f"Summed attention weight, clicked vs not ({group.dataset})")

    def table(self, data) -> tuple[str, str]:
        summary, _ = data
        rows = [[r.pooler, str(int(r.seeds)), pm(r.auc_mean, r.auc_std, 3), pm(r.gauc_mean, r.gauc_std, 3),
                 f"{r.mean_clicked:.3f}", f"{r.mean_not_clicked:.3f}"] for r in summary.itertuples()]
        return ("Interest intensity: the summed weight alone as a predictor (0.5 = no signal; "
                "poolers with normalised weights sum to 1 and are left out)",
                md_table(["pooler", "seeds", "AUC of the sum", "GAUC of the sum",
                          "mean sum (clicked)", "mean sum (not clicked)"], rows))


def plot_intensity(samples: pd.DataFrame, summary: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """``intensity_figure`` saved as ``stem``.png and .svg."""
    return save(intensity_figure(samples, summary, title), stem)


def intensity_figure(samples: pd.DataFrame, summary: pd.DataFrame, title: str = ""):
    """Distribution of the summed attention weight for clicked vs not-clicked candidates, one panel
    per pooler, with the AUC of that sum alone (mean ± std over seeds) in the panel's title
    (``summary, samples``: ``analysis.intensity``). Every panel has both axes labelled and ticked."""
    plt = pyplot()
    k = len(samples)
    cols = min(k, 3)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.3, 2.2 * rows + 0.4), squeeze=False,
                             layout="constrained")
    for ax, (_, s) in zip(axes.flat, samples.iterrows()):
        values, label = np.asarray(s["attention_sum"]), np.asarray(s["label"])
        lo, hi = np.percentile(values, [0.5, 99.5])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        ax.hist(values[label == 1], bins=bins, density=True, alpha=0.55, color=OKABE_ITO[0], label="clicked")
        ax.hist(values[label == 0], bins=bins, density=True, alpha=0.55, color=OKABE_ITO[3], label="not clicked")
        row = summary[(summary["pooler"] == s["pooler"]) & (summary["architecture"] == s["architecture"])
                      & (summary["dataset"] == s["dataset"])]
        auc_txt = ""
        if not row.empty:
            r = row.iloc[0]
            auc_txt = f"\nAUC of the sum {r['auc_mean']:.3f}" + (f" ± {r['auc_std']:.3f}" if np.isfinite(r["auc_std"]) else "")
        ax.set_title(f"{s['pooler']}{auc_txt}", fontsize=8.5)
        ax.set_xlabel("sum of attention weights")
        ax.set_ylabel("density")
        ax.margins(x=0.02)
        ax.locator_params(axis="both", nbins=4)
    for ax in list(axes.flat)[k:]:
        ax.remove()  # no empty frame where a grid row is not full
    axes.flat[0].legend(frameon=False)
    fig.suptitle(title or "Interest intensity: summed unnormalised attention", fontsize=10)
    return fig
