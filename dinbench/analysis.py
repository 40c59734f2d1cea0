"""Analyses behind the report's plots, computed from run records and what runs saved beside them.

Every function here returns plain DataFrames (no drawing; ``dinbench.plots`` draws them), so the
same numbers go into tables, plots and tests. Nothing retrains: the inputs are the saved test/valid
predictions (``predictions_test.parquet``), the per-epoch history in ``record.json`` and, for the
attention analyses, the selected model's weights (``model.pt``).

- ``gauc_by_length``: test GAUC within history-length buckets (where does attention pay off?).
- ``learning_curves``: valid GAUC per epoch, with the epoch that was selected.
- ``intensity``: the summed attention weight of each test sample, and the AUC of that sum alone
  as a click predictor (the DIN paper's claim that unnormalised weights measure interest intensity).
- ``attention_case``: for one user and two candidates, every history item with its weight (the
  paper's Fig. 5-style case study).
- ``relevant_attention``: on ``synthetic``, whose generator knows which history items are related
  to a candidate (same hidden topic), how well each pooler's weights single them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dinbench import poolers
from dinbench.batches import make_store
from dinbench.metrics import auc, gauc
from dinbench.records import Loaded
from dinbench.stats import mean_ci
from dinbench.model.build import load_model

# Right-closed history-length buckets: (lo, hi] in behaviours; the labels read as ranges. Up to 1,000
# (--max-len of the long-sequence poolers): a bucket holds no users where histories are shorter.
LENGTH_EDGES = (0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, np.inf)
CHANCE = 0.5


def length_bucket(hist_len: np.ndarray, edges=LENGTH_EDGES) -> np.ndarray:
    """Label of each history length's bucket, e.g. '3-5', '1001+' (lengths >= 1; 0 gets '0')."""
    labels = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        labels.append(f"{int(lo) + 1}+" if not np.isfinite(hi) else (f"{int(lo) + 1}-{int(hi)}" if hi > lo + 1 else f"{int(hi)}"))
    idx = np.searchsorted(np.asarray(edges[1:-1], dtype=float), np.asarray(hist_len, dtype=float), side="left")
    out = np.asarray(labels, dtype=object)[idx]
    out[np.asarray(hist_len) == 0] = "0"
    return out


def bucket_order(edges=LENGTH_EDGES) -> list[str]:
    lengths = [0] + [int(lo) + 1 for lo in edges[:-1]]
    return list(dict.fromkeys(length_bucket(np.asarray(lengths), edges)))


def _predictions(path: str | None, columns: list[str]) -> pd.DataFrame | None:
    if not path:
        return None
    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError, KeyError):
        return None


def gauc_by_length(runs: pd.DataFrame, edges=LENGTH_EDGES) -> pd.DataFrame:
    """Test GAUC per (dataset, architecture, pooler, length bucket): mean and std over seeds.

    ``runs`` is ``report.runs_frame(...)`` (one row per completed run, with its predictions path).
    A user's samples share one history under the DIN protocol, so each user falls in one bucket;
    GAUC inside a bucket is the usual impression-weighted mean over the users in it. Columns:
    dataset, architecture, pooler, bucket, gauc_mean, gauc_std, seeds, samples, users.
    """
    per_run = gauc_by_length_per_run(runs, edges)
    if per_run.empty:
        return pd.DataFrame(columns=["dataset", "architecture", "pooler", "bucket", "gauc_mean", "gauc_std", "seeds",
                                     "samples", "users"])
    out = per_run.groupby(["dataset", "architecture", "pooler", "bucket"], sort=False).agg(
        gauc_mean=("gauc", "mean"), gauc_std=("gauc", "std"), seeds=("seed", "nunique"),
        samples=("samples", "max"), users=("users", "max")).reset_index()
    order = {b: i for i, b in enumerate(bucket_order(edges))}
    return out.sort_values(["dataset", "architecture", "pooler", "bucket"],
                           key=lambda s: s.map(order) if s.name == "bucket" else s).reset_index(drop=True)


def gauc_by_length_per_run(runs: pd.DataFrame, edges=LENGTH_EDGES) -> pd.DataFrame:
    """Test GAUC per run and length bucket (what ``gauc_by_length`` averages over seeds). Columns:
    dataset, architecture, pooler, seed, bucket, gauc, samples, users."""
    rows = []
    for r in runs.itertuples(index=False):
        pred = _predictions(r.predictions, ["user", "label", "score", "hist_len"])
        if pred is None:
            continue
        buckets = length_bucket(pred["hist_len"].to_numpy(), edges)
        for b in np.unique(buckets):
            sel = buckets == b
            g = gauc(pred["user"].to_numpy()[sel], pred["label"].to_numpy()[sel], pred["score"].to_numpy()[sel])
            rows.append({"dataset": r.dataset, "architecture": r.architecture, "pooler": r.pooler, "seed": r.seed,
                         "bucket": b, "gauc": g.value, "samples": int(sel.sum()), "users": g.users})
    return pd.DataFrame(rows, columns=["dataset", "architecture", "pooler", "seed", "bucket", "gauc", "samples", "users"])


def length_gain(per_run: pd.DataFrame, baseline: str, level: float = 0.95) -> pd.DataFrame:
    """Per (dataset, architecture, pooler, bucket): test GAUC minus the ``baseline`` pooler's, paired by
    seed (``per_run``: ``gauc_by_length_per_run``): mean and its ``level`` t-interval over the seeds
    both have (NaN bounds with one seed). Columns: dataset, architecture, pooler, bucket, diff_mean,
    ci_low, ci_high, seeds. Empty when the baseline has no runs."""
    keys = ["dataset", "architecture", "bucket", "seed"]
    base = per_run[per_run["pooler"] == baseline][keys + ["gauc"]].rename(columns={"gauc": "base"})
    paired = per_run[per_run["pooler"] != baseline].merge(base, on=keys)
    rows = []
    for (dataset, arch, pooler, bucket), g in paired.groupby(["dataset", "architecture", "pooler", "bucket"], sort=False):
        mean, _, low, high = mean_ci((g["gauc"] - g["base"]).to_numpy(), level)
        rows.append({"dataset": dataset, "architecture": arch, "pooler": pooler, "bucket": bucket, "diff_mean": mean,
                     "ci_low": low, "ci_high": high, "seeds": len(g)})
    return pd.DataFrame(rows, columns=["dataset", "architecture", "pooler", "bucket", "diff_mean", "ci_low", "ci_high",
                                       "seeds"])


def learning_curves(loaded: list[Loaded]) -> pd.DataFrame:
    """Valid GAUC after every epoch of every completed run that had a validation split.

    Columns: dataset, architecture, pooler, seed, run_id, epoch, valid_gauc, train_loss, selected
    (True on the epoch whose weights were kept).
    """
    rows = []
    for item in loaded:
        r = item.record
        if r.get("status") != "completed":
            continue
        for e in r.get("epochs", []):
            valid = e.get("valid") or {}
            if "gauc" not in valid:
                continue
            rows.append({"dataset": r["dataset"]["name"], "architecture": r["config"].get("architecture", "ranking"),
                         "pooler": r["pooler"], "seed": r["seed"], "run_id": r["run_id"], "epoch": e["epoch"],
                         "valid_gauc": valid["gauc"], "train_loss": e.get("train_loss"),
                         "selected": e["epoch"] == r.get("best_epoch")})
    return pd.DataFrame(rows, columns=["dataset", "architecture", "pooler", "seed", "run_id", "epoch", "valid_gauc",
                                       "train_loss", "selected"])


def intensity(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summed attention weight as a click predictor on its own.

    Only poolers that attend to the candidate count (``sum``'s weights are its mask). Returns ``(summary, samples)``. ``summary``: one row per (dataset, architecture, pooler) whose
    runs saved a non-constant attention sum: AUC and GAUC of the sum alone (mean and std over
    seeds), and the mean sum for clicked and not-clicked candidates. Normalised weights (softmax)
    sum to 1 over every non-empty history (0 over an empty one) and carry no signal by construction:
    a pooler whose sums are constant over the samples with a history is left out, whatever its name. ``samples``: the
    sums and labels of the lowest seed of each pooler, for the distribution plot.
    """
    per_seed, samples = [], []
    for r in runs.sort_values("seed").itertuples(index=False):
        if not poolers.uses_candidate(r.pooler):
            continue  # e.g. sum: its "weights" are the mask, their sum the history length
        pred = _predictions(r.predictions, ["user", "label", "attention_sum", "hist_len"])
        if pred is None:  # predictions without hist_len (hand-made): every sample counts as having a history
            pred = _predictions(r.predictions, ["user", "label", "attention_sum"])
        if pred is None:
            continue
        s = pred["attention_sum"].to_numpy()
        ok = np.isfinite(s)
        with_history = ok & (pred["hist_len"].to_numpy() > 0 if "hist_len" in pred else True)
        if ok.sum() < 2 or with_history.sum() < 2 or np.ptp(s[with_history]) < 1e-4:  # no weights, or normalised
            continue
        y, u = pred["label"].to_numpy()[ok], pred["user"].to_numpy()[ok]
        per_seed.append({"dataset": r.dataset, "architecture": r.architecture, "pooler": r.pooler, "seed": r.seed,
                         "auc": auc(y, s[ok]), "gauc": gauc(u, y, s[ok]).value,
                         "mean_clicked": float(s[ok][y == 1].mean()), "mean_not_clicked": float(s[ok][y == 0].mean())})
        key = (r.dataset, r.architecture, r.pooler)
        if not any((x["dataset"], x["architecture"], x["pooler"]) == key for x in samples):
            samples.append({"dataset": r.dataset, "architecture": r.architecture, "pooler": r.pooler,
                            "seed": r.seed, "attention_sum": s[ok], "label": y})
    cols = ["dataset", "architecture", "pooler", "seeds", "auc_mean", "auc_std", "gauc_mean", "gauc_std",
            "mean_clicked", "mean_not_clicked"]
    if not per_seed:
        return pd.DataFrame(columns=cols), pd.DataFrame(samples)
    summary = pd.DataFrame(per_seed).groupby(["dataset", "architecture", "pooler"], sort=True).agg(
        seeds=("seed", "nunique"), auc_mean=("auc", "mean"), auc_std=("auc", "std"), gauc_mean=("gauc", "mean"),
        gauc_std=("gauc", "std"), mean_clicked=("mean_clicked", "mean"),
        mean_not_clicked=("mean_not_clicked", "mean")).reset_index()
    return summary[cols], pd.DataFrame(samples)


# ----------------------------------------------------------------------------- attention from saved models


def _load(run_dir: Path, record: dict[str, Any], prepared):
    """The run's saved model (``model.build.load_model``); one seam, so tests can substitute a model."""
    return load_model(run_dir, record, prepared)


def _weights(model, store, samples, idx: np.ndarray, batch_size: int = 4096):
    """Yield (idx chunk, batch, weights [b, L] numpy with padding = NaN) for rows ``idx``."""
    with torch.inference_mode():
        for start in range(0, len(idx), batch_size):
            part = idx[start:start + batch_size]
            batch = store.batch(samples, part)
            _, w = model(batch)
            if w is None:
                yield part, batch, None
                continue
            yield part, batch, np.where(batch.mask.numpy(), w.double().numpy(), np.nan)


def pick_case_user(prepared, samples, min_len: int = 8, max_len: int = 20) -> int | None:
    """The first test user (by id) whose history has ``min_len``-``max_len`` items of at least 3
    categories and whose two test candidates (clicked, not clicked) are of different categories.

    The rule looks at the data only, never at a model's scores, so the case study is not picked
    to flatter any pooler. None when no user qualifies.
    """
    frame = pd.DataFrame({"user": samples.user, "label": samples.label, "category": samples.category,
                          "hist_len": samples.hist_len, "hist_start": samples.hist_start})
    cats = prepared.behaviours["category"].to_numpy()
    for user, g in frame.groupby("user", sort=True):
        if len(g) != 2 or set(g["label"]) != {0.0, 1.0} or g["category"].nunique() != 2:
            continue
        n, start = int(g["hist_len"].iloc[0]), int(g["hist_start"].iloc[0])
        if min_len <= n <= max_len and len(np.unique(cats[start:start + n])) >= 3:
            return int(user)
    return None


def attention_case(run_dir: Path, record: dict[str, Any], prepared, user: int | None = None) -> pd.DataFrame:
    """One user's history with the weight the run's pooler gives each item for each of the user's
    two test candidates (the clicked one and the not-clicked one).

    Columns: user, candidate ('clicked' | 'not clicked'), candidate_item, candidate_category,
    position (0 = oldest), item, category, weight, same_category. Empty when the pooler has no
    weights or no user qualifies (see ``pick_case_user``).
    """
    model = _load(run_dir, record, prepared)
    store = make_store(prepared, "cpu")  # load_model gives a CPU model
    samples = store.samples(prepared.splits["test"], int(record["config"]["max_len"]))
    user = pick_case_user(prepared, samples) if user is None else user
    if user is None:
        return pd.DataFrame()
    idx = np.flatnonzero(samples.user == user)
    names = ["(padding)", *prepared.manifest.get("categories", [])]
    rows = []
    for part, batch, w in _weights(model, store, samples, idx):
        if w is None:
            return pd.DataFrame()
        for b, row in enumerate(part):
            n = int(samples.hist_len[row])
            cand_cat = int(samples.category[row])
            for pos in range(n):
                cat = int(batch.hist_category[b, pos])
                rows.append({
                    "user": user, "candidate": "clicked" if samples.label[row] == 1 else "not clicked",
                    "candidate_item": int(samples.item[row]), "candidate_category": _name(names, cand_cat),
                    "position": pos, "item": int(batch.hist_item[b, pos]), "category": _name(names, cat),
                    "weight": float(w[b, pos]), "same_category": cat == cand_cat,
                })
    return pd.DataFrame(rows)


def _name(names: list[str], cat: int) -> str:
    return names[cat] if 0 <= cat < len(names) else str(cat)


def relevant_attention(run_dir: Path, record: dict[str, Any], prepared, split: str = "test") -> dict[str, float]:
    """How well a run's history weights pick out the history items related to the candidate.

    Needs the ground truth of ``synthetic`` (``items.topic``): a history item is relevant when it
    shares the candidate's topic. Over the rows of ``split`` with at least one relevant and one
    unrelated history item:

    - ``relevance_auc``: the probability that a relevant item gets a higher weight than an
      unrelated item of the same history (ties count one half), averaged over rows. 0.5 = blind
      to relevance; it needs no normalisation, so it compares softmax and unnormalised weights.
    - ``weight_share``: the share of the row's weight on relevant items (rows whose weights are all
      >= 0 only), against ``relevant_share``, the share of relevant items (what uniform weights,
      i.e. ``average``, give).
    NaN everywhere when the pooler returns no weights.
    """
    if "topic" not in prepared.items:
        raise ValueError(f"dataset '{prepared.name}' has no topic ground truth (only synthetic has)")
    topic = np.r_[-1, prepared.items["topic"].to_numpy()]  # [n_items + 1]; 0 = padding
    model = _load(run_dir, record, prepared)
    store = make_store(prepared, "cpu")  # load_model gives a CPU model
    samples = store.samples(prepared.splits[split], int(record["config"]["max_len"]))
    aucs, shares, base = [], [], []
    for part, batch, w in _weights(model, store, samples, np.flatnonzero(samples.hist_len >= 2)):
        if w is None:
            return {"relevance_auc": float("nan"), "weight_share": float("nan"), "relevant_share": float("nan"),
                    "rows": 0}
        mask = batch.mask.numpy()
        related = (topic[batch.hist_item.numpy()] == topic[batch.item.numpy()][:, None]) & mask  # [b, L]
        unrelated = mask & ~related
        both = related.any(1) & unrelated.any(1)
        for b in np.flatnonzero(both):
            wr, wu = w[b, related[b]], w[b, unrelated[b]]
            diff = wr[:, None] - wu[None, :]
            aucs.append(float(((diff > 0) + 0.5 * (diff == 0)).mean()))
            row = w[b, mask[b]]
            base.append(float(related[b].sum() / mask[b].sum()))
            if np.all(row >= 0) and row.sum() > 0:
                shares.append(float(wr.sum() / row.sum()))
    return {"relevance_auc": float(np.mean(aucs)) if aucs else float("nan"),
            "weight_share": float(np.mean(shares)) if shares else float("nan"),
            "relevant_share": float(np.mean(base)) if base else float("nan"), "rows": len(aucs)}
