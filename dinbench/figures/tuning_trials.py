"""How much tuning each pooler needed, and how sensitive it is (issue 15): for the tuned rows of a
group, every trial of each pooler's study — its valid GAUC against the trial number with the best so
far, and the spread of its trials' valid GAUC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dinbench.figures.base import Figure, Group
from dinbench.plots import pyplot, save, style
from dinbench.tables import md_table

TUNED = " (tuned)"  # report.TUNED (report is not imported by the figures)


def _horizontal() -> dict[str, object]:
    """boxplot's keyword for horizontal boxes: ``orientation`` (matplotlib 3.10+; ``vert`` is deprecated
    from 3.11) or ``vert=False`` (older; >=3.7 is supported)."""
    import matplotlib

    return {"orientation": "horizontal"} if tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) >= (3, 10) \
        else {"vert": False}


def study_trials(group: Group) -> pd.DataFrame:
    """Every trial of the studies behind the group's tuned rows: pooler (its row label), trial number,
    state (complete, pruned), valid GAUC (the trial's best for a complete one, its last reported epoch
    for a pruned one). Studies that cannot be read are left out."""
    from dinbench import tuning

    rows, seen = [], set()
    for run_id in group.runs["run_id"]:
        item = group.by_run.get(run_id)
        tuned = (item.record.get("tuning") or {}) if item is not None else {}
        if not tuned.get("db") or not tuned.get("pooler"):
            continue
        db = (item.path.parent.parent / tuned["db"]).resolve()  # results/<run>/record.json -> results/
        key = (db, tuned["pooler"])
        if key in seen or not db.is_file():
            continue
        seen.add(key)
        try:
            study = tuning.load(db, tuned["pooler"])
        except Exception:  # noqa: BLE001 - a study that cannot be read is left out (noted by the caller)
            continue
        for t in study.get_trials(deepcopy=False):
            state = t.state.name.lower()
            value = t.value if state == "complete" else (list(t.intermediate_values.values()) or [None])[-1]
            if state in ("complete", "pruned") and value is not None and np.isfinite(value):
                rows.append(dict(pooler=tuned["pooler"] + TUNED, trial=t.number, state=state, valid_gauc=float(value)))
    return pd.DataFrame(rows, columns=["pooler", "trial", "state", "valid_gauc"])


class TuningTrials(Figure):
    name = "tuning-trials"
    step = "tuning trials"
    caption = ("Tuning on valid, per pooler (same budget and sampler for every pooler). Left: each trial's valid "
               "GAUC against its number (hollow: pruned after its last reported epoch), the line the best so far "
               "- how many trials a pooler needed. Right: the spread of its completed trials - how sensitive it is "
               "to its settings.")

    def applies(self, group: Group) -> bool:
        return bool(group.runs["pooler"].str.endswith(TUNED).any())

    def compute(self, group: Group) -> pd.DataFrame | None:
        trials = study_trials(group)
        if trials.empty:
            group.section.notes.append("no tuning-trials figure: the studies of these tuned runs are not in the "
                                       "results folder (results/_tuning/DATASET/STUDY.db)")
            return None
        return trials

    def draw(self, data: pd.DataFrame, stem: Path, group: Group) -> list[Path]:
        return plot_tuning_trials(data, stem, f"Tuning trials ({group.dataset})")

    def table(self, data: pd.DataFrame) -> tuple[str, str]:
        rows = []
        for pooler, g in data.groupby("pooler", sort=True):
            done = g[g["state"] == "complete"]["valid_gauc"]
            best_at = int(g.loc[g["valid_gauc"].idxmax(), "trial"]) if len(g) else -1
            q1, q3 = (done.quantile(0.25), done.quantile(0.75)) if len(done) else (np.nan, np.nan)
            rows.append([pooler, str(len(g)), str(int((g["state"] == "pruned").sum())), f"{g['valid_gauc'].max():.4f}",
                         str(best_at), f"{done.median():.4f}" if len(done) else "—",
                         f"{q3 - q1:.4f}" if len(done) else "—"])
        return ("Tuning trials (valid GAUC)",
                md_table(["pooler", "trials", "pruned", "best", "best at trial", "median", "IQR"], rows))


def plot_tuning_trials(trials: pd.DataFrame, stem: Path, title: str = "") -> list[Path]:
    """``trials`` (``study_trials``): valid GAUC per trial with the running best (left), the spread of
    the completed trials per pooler (right)."""
    plt = pyplot()
    names = sorted(trials["pooler"].unique())
    colours = style(names)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.4), gridspec_kw={"width_ratios": [3, 2]})
    for pooler in names:
        g = trials[trials["pooler"] == pooler].sort_values("trial")
        c, m, ls = colours[pooler]
        done, pruned = g[g["state"] == "complete"], g[g["state"] == "pruned"]
        left.plot(done["trial"], done["valid_gauc"], color=c, marker=m, ms=4, ls="none")
        left.plot(pruned["trial"], pruned["valid_gauc"], color=c, marker=m, ms=4, ls="none", mfc="none")
        left.step(g["trial"], g["valid_gauc"].cummax(), where="post", color=c, ls=ls, lw=1.2, label=pooler)
    left.set_xlabel("trial")
    left.set_ylabel("valid GAUC")
    left.xaxis.get_major_locator().set_params(integer=True)
    left.grid(alpha=0.3)
    left.legend(fontsize=7, frameon=False)
    spreads = [trials[(trials["pooler"] == p) & (trials["state"] == "complete")]["valid_gauc"].to_numpy() for p in names]
    shown = [(p, s) for p, s in zip(names, spreads) if len(s)]
    if shown:
        right.boxplot([s for _, s in shown], widths=0.5, **_horizontal())
        right.set_yticks(range(1, len(shown) + 1), [p for p, _ in shown], fontsize=7)
    right.set_xlabel("valid GAUC of completed trials")
    right.grid(alpha=0.3, axis="x")
    fig.suptitle(title or "Tuning trials", fontsize=10)
    fig.tight_layout()
    return save(fig, stem)
