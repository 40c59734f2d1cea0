"""The attention case study (the DIN paper's Fig. 5): one user's history and the weight each
attention pooler gives every item, for the user's clicked and not-clicked test candidates.

One picture per pooler shown (see ``case_poolers``), from the saved model of its lowest seed; it
needs the prepared dataset the runs were trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dinbench import analysis
from dinbench.errors import DinbenchError
from dinbench.figures.base import Figure, Group, attention_poolers
from dinbench.plots import OKABE_ITO, pyplot, save


def case_poolers(group_table: pd.DataFrame) -> list[str]:
    """The poolers shown in the case study: each din variant that ran, plus the best other attention pooler."""
    ranked = attention_poolers(group_table.sort_values("gauc_mean", ascending=False)["pooler"].tolist())
    picked = [p for p in ("din:none", "din:softmax") if p in ranked]
    return picked + [p for p in ranked if p not in picked][:1]


def lowest_seed(runs: pd.DataFrame, pooler: str) -> pd.Series:
    """The run of ``pooler`` with the lowest seed (then run id)."""
    return runs[runs["pooler"] == pooler].sort_values(["seed", "run_id"]).iloc[0]


class AttentionCase(Figure):
    name = "attention-case"
    step = "attention case study"
    caption = ("the weight of each history item for the user's clicked and not-clicked test candidates. The user "
               "is the first (by id) with 8-20 history items of 3+ categories and candidates of two categories: "
               "chosen from the data, not from any model's scores.")

    def applies(self, group: Group) -> bool:
        return bool(group.attention_poolers) and group.prepared() is not None

    def add_to(self, group: Group) -> None:
        if not self.applies(group):
            return
        for pooler in case_poolers(group.table):
            run = lowest_seed(group.runs, pooler)
            item = group.by_run.get(run["run_id"])
            if item is None:
                continue
            group.step(f"{self.step}, {pooler}")
            try:
                case = analysis.attention_case(item.path.parent, item.record, group.prepared())
            except DinbenchError as exc:
                group.section.notes.append(f"attention case study for {pooler} left out: {exc}")
                continue
            if case.empty:
                group.section.notes.append(f"attention case study for {pooler} left out: no test user fits the rule")
                continue
            title = f"{pooler}, seed {run['seed']}: user {case['user'].iloc[0]} ({group.dataset})"
            group.add_figure(plot_attention_case(case, group.stem(self.name, pooler), title),
                             f"{pooler}: {self.caption}")


def plot_attention_case(case: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """The case study (``case``: ``analysis.attention_case``): history items (oldest at the top)
    and the weight each candidate gives them.

    One panel per candidate; bars of items in the candidate's category are highlighted.
    """
    plt = pyplot()
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
    return save(fig, stem)
