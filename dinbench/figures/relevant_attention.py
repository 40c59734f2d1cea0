"""On ``synthetic``, whose generator knows which history items share the candidate's hidden topic:
how well each pooler's weights single those items out (needs the prepared dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dinbench import analysis
from dinbench.analysis import CHANCE
from dinbench.errors import DinbenchError
from dinbench.figures.base import Figure, Group
from dinbench.plots import pyplot, save, style
from dinbench.tables import md_table, pm


def relevance(group: Group) -> pd.DataFrame:
    """Per pooler of the group: seeds, relevance AUC (mean, std), weight share and relevant share
    (means) of ``analysis.relevant_attention``; runs whose model cannot be loaded are skipped."""
    rows = []
    for r in group.runs.itertuples(index=False):
        item = group.by_run.get(r.run_id)
        if item is None:
            continue
        try:
            m = analysis.relevant_attention(item.path.parent, item.record, group.prepared())
        except DinbenchError:
            continue
        if np.isfinite(m["relevance_auc"]):
            rows.append({"pooler": r.pooler, "seed": r.seed, **m})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).groupby("pooler").agg(
        seeds=("seed", "nunique"), relevance_auc_mean=("relevance_auc", "mean"),
        relevance_auc_std=("relevance_auc", "std"), weight_share_mean=("weight_share", "mean"),
        relevant_share_mean=("relevant_share", "mean")).reset_index()


class RelevantAttention(Figure):
    name = "relevant-attention"
    step = "attention on relevant items"
    caption = ("Probability that a history item of the candidate's hidden topic (the generator's ground truth) "
               "gets more weight than an unrelated item of the same history; mean ± std over seeds, test split.")

    def applies(self, group: Group) -> bool:
        if not group.attention_poolers or group.prepared() is None:
            return False
        return "topic" in getattr(group.prepared(), "items", pd.DataFrame()).columns

    def compute(self, group: Group) -> pd.DataFrame | None:
        rel = relevance(group)
        return None if rel.empty else rel

    def draw(self, data: pd.DataFrame, stem: Path, group: Group) -> list[Path]:
        return plot_relevant_attention(data, stem, f"Weight on truly relevant history items ({group.dataset})")

    def table(self, data: pd.DataFrame) -> tuple[str, str]:
        rows = [[r.pooler, str(int(r.seeds)), pm(r.relevance_auc_mean, r.relevance_auc_std, 3),
                 pm(r.weight_share_mean, np.nan, 3), f"{r.relevant_share_mean:.3f}"]
                for r in data.sort_values("relevance_auc_mean", ascending=False).itertuples()]
        return ("Attention on the truly relevant history items (synthetic ground truth)",
                md_table(["pooler", "seeds", "relevance AUC (0.5 = blind)",
                          "weight share on relevant", "share of relevant items"], rows))


def plot_relevant_attention(table: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """Per pooler (``table``: ``relevance``): relevance AUC of its weights (mean ± std over seeds)
    against chance 0.5."""
    plt = pyplot()
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
    return save(fig, stem)
