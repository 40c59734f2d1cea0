"""Tables over run records: one row per (dataset, configuration, architecture, pooler), mean ± std over seeds.

RelaImpr (DIN paper, Eq. 12) against a baseline pooler of the same dataset and configuration:
    RelaImpr = ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100%
computed on GAUC (the paper's "AUC" is its user-weighted AUC) and on AUC.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import pandas as pd

from dinbench.config import comparable
from dinbench.errors import DinbenchError
from dinbench.records import Loaded

FORMATS = ("table", "markdown", "csv", "latex", "json")


def config_id(key: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]


def runs_frame(loaded: list[Loaded]) -> pd.DataFrame:
    rows = []
    for item in loaded:
        r = item.record
        if r.get("status") != "completed":
            continue
        rows.append(
            {
                "dataset": r["dataset"]["name"],
                "fingerprint": r["dataset"]["fingerprint"],
                "protocol": r["config"].get("protocol", "din"),
                "architecture": r["config"].get("architecture", "ranking"),
                "config": config_id(comparable(r["config"])),
                "config_json": json.dumps(comparable(r["config"]), sort_keys=True),
                "pooler": r["pooler"],
                "seed": r["seed"],
                "auc": r["test"]["auc"],
                "gauc": r["test"]["gauc"],
                "logloss": r["test"]["logloss"],
                "best_epoch": r["best_epoch"],
                "rows_per_s": r.get("train_rows_per_s") or np.nan,
                "wall_seconds": r.get("wall_seconds", np.nan),
                "run_id": r["run_id"],
            }
        )
    return pd.DataFrame(rows)


def check_same_data(runs: pd.DataFrame) -> None:
    """Refuse to average runs of one dataset and configuration that were made on different data.

    Runs are compared (seeds averaged, RelaImpr taken) within a dataset name and configuration; if
    the prepared dataset was rebuilt between runs, its fingerprint differs and the numbers mix.
    """
    if runs.empty:
        return
    for (dataset, config), group in runs.groupby(["dataset", "config"], sort=True):
        prints = group.groupby("fingerprint", sort=True)["run_id"].agg(["count", "first"])
        if len(prints) < 2:
            continue
        which = "; ".join(f"fingerprint {fp[:12]} in {n} run(s), e.g. {first}" for fp, (n, first) in prints.iterrows())
        raise DinbenchError(
            f"refusing to average runs of dataset '{dataset}' (config {config}) made on different data: {which}; "
            f"the dataset was rebuilt between runs - move the stale records out of the results folder "
            f"or pass --results-dir for each set"
        )


def config_differences(runs: pd.DataFrame) -> list[str]:
    """One note per dataset whose runs used more than one configuration, naming the fields that differ."""
    notes = []
    if runs.empty or "config_json" not in runs:
        return notes
    for dataset, group in runs.groupby("dataset", sort=True):
        configs = {cid: json.loads(text) for cid, text in zip(group["config"], group["config_json"])}
        if len(configs) < 2:
            continue
        keys = sorted(set().union(*configs.values()))
        differ = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]
        notes.append(
            f"dataset '{dataset}' has runs under {len(configs)} configurations ({', '.join(sorted(configs))}) "
            f"differing in {', '.join(differ)}: they are separate rows, never averaged together"
        )
    return notes


def relaimpr(value: float, base: float) -> float:
    if not np.isfinite(base) or base == 0.5:
        return float("nan")
    return ((value - 0.5) / (base - 0.5) - 1.0) * 100.0


def summarize(runs: pd.DataFrame, baseline: str = "average") -> pd.DataFrame:
    """Aggregate per (dataset, protocol, config, pooler); seeds are the repeats.

    ``baseline`` is a canonical pooler spec (``average``, ``din:none``); RelaImpr is NaN where the
    baseline has no runs with the same dataset, protocol and configuration.
    """
    if runs.empty:
        return pd.DataFrame()
    check_same_data(runs)
    keys = ["dataset", "protocol", "config", "architecture", "pooler"]
    g = runs.groupby(keys, sort=True)
    table = g.agg(
        seeds=("seed", "nunique"),
        auc_mean=("auc", "mean"),
        auc_std=("auc", "std"),
        gauc_mean=("gauc", "mean"),
        gauc_std=("gauc", "std"),
        logloss_mean=("logloss", "mean"),
        best_epoch=("best_epoch", "mean"),
        rows_per_s=("rows_per_s", "mean"),
        wall_seconds=("wall_seconds", "sum"),
    ).reset_index()
    # one seed: the std stays NaN (undefined), and tables show the mean alone
    # The baseline is the same pooler in the same architecture, dataset, protocol and configuration.
    scope = ["dataset", "protocol", "config", "architecture"]
    base = table[table["pooler"] == baseline].set_index(scope)
    gauc_base = [base["gauc_mean"].get(tuple(k), np.nan) for k in table[scope].values]
    auc_base = [base["auc_mean"].get(tuple(k), np.nan) for k in table[scope].values]
    table["relaimpr_gauc"] = [relaimpr(v, b) for v, b in zip(table["gauc_mean"], gauc_base)]
    table["relaimpr_auc"] = [relaimpr(v, b) for v, b in zip(table["auc_mean"], auc_base)]
    return table.sort_values(
        ["dataset", "protocol", "config", "architecture", "gauc_mean"], ascending=[True, True, True, True, False]
    )


def _pm(mean: float, std: float) -> str:
    return f"{mean:.4f}" if not np.isfinite(std) else f"{mean:.4f} ± {std:.4f}"


def _pct(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:+.2f}%"


LABEL_COLUMNS = ("dataset", "protocol", "config", "architecture", "pooler")


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]], dict[str, str]]:
    """Header and formatted rows for human-readable tables.

    Label columns other than dataset and pooler that hold one value for every row are left out
    and returned as ``constants`` (shown once, under the table), which keeps tables narrow.
    """
    labels = [c for c in LABEL_COLUMNS if c in ("dataset", "pooler") or table[c].nunique() > 1]
    constants = {c: str(table[c].iloc[0]) for c in LABEL_COLUMNS if c not in labels and not table.empty}
    header = [*labels, "seeds", "test AUC", "test GAUC", "RelaImpr (GAUC)", "best epoch", "train rows/s"]
    rows = []
    for _, r in table.iterrows():
        rows.append([
            *(str(r[c]) for c in labels),
            str(int(r["seeds"])),
            _pm(r["auc_mean"], r["auc_std"]), _pm(r["gauc_mean"], r["gauc_std"]), _pct(r["relaimpr_gauc"]),
            f"{r['best_epoch']:.1f}", "—" if not np.isfinite(r["rows_per_s"]) else f"{r['rows_per_s']:,.0f}",
        ])
    return header, rows, constants


def describe_constants(constants: dict[str, str], baseline: str) -> str:
    parts = [f"{k} {v}" for k, v in constants.items() if k != "config"]
    return "; ".join(["mean ± std over seeds", f"RelaImpr vs {baseline}", *parts])


def render(table: pd.DataFrame, fmt: str, baseline: str) -> str:
    """Text of the table in ``fmt`` (markdown, csv, latex, json). ``table`` = rich, done by the CLI."""
    if fmt == "csv":
        buf = io.StringIO()
        table.to_csv(buf, index=False, float_format="%.6f")
        return buf.getvalue()
    if fmt == "json":
        return json.dumps(json.loads(table.to_json(orient="records")), indent=2) + "\n"
    header, rows, constants = display_rows(table)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
        lines.append(describe_constants(constants, baseline) + ".")
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        esc = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$")  # noqa: E731
        lines = [r"\begin{tabular}{" + "l" * (len(header) - 6) + "r" * 6 + "}", r"\toprule",
                 " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(esc(c) for c in row) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
