"""Valid GAUC after each epoch, one line per seed, with the epoch that was selected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dinbench import analysis
from dinbench.figures.base import Figure, Group
from dinbench.plots import pyplot, save, style


class LearningCurves(Figure):
    name = "learning-curves"
    step = "learning curves"
    caption = ("Valid GAUC after each epoch, one line per seed; "
               "the marker is the epoch selected on valid (and scored once on test).")

    def compute(self, group: Group) -> pd.DataFrame | None:
        ids = set(group.runs["run_id"])
        curves = analysis.learning_curves([group.by_run[i] for i in ids if i in group.by_run])
        if curves.empty:
            group.section.notes.append("no learning curves: these runs had no validation split (protocol paper)")
            return None
        return curves

    def draw(self, data: pd.DataFrame, stem: Path, group: Group) -> list[Path]:
        return plot_learning_curves(data, stem, f"Learning curves ({group.dataset})")


def plot_learning_curves(curves: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Valid GAUC per epoch (``curves``: ``analysis.learning_curves``): a line per seed, the
    selected epoch of each run as a marker.

    Up to six poolers share one panel; more get one small panel each (same axes), so 14 poolers x
    3 seeds stay readable.
    """
    plt = pyplot()
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
    return save(fig, stem)
