"""Tables over run records: one row per (dataset, configuration, architecture, pooler), mean ± std over seeds.

RelaImpr (DIN paper, Eq. 12) against a baseline pooler of the same dataset and configuration:
    RelaImpr = ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100%
computed on GAUC (the paper's "AUC" is its user-weighted AUC) and on AUC.

Statistics per row (see dinbench.stats): a 95% Student-t confidence interval of the mean test GAUC
over seeds; the rank of the pooler by mean test GAUC within its (dataset, protocol, config,
architecture) group; and two two-sided tests against the baseline of that group: a paired t-test
over the seeds both have (``p_seeds``) and a paired bootstrap over test users (``p_bootstrap``, see
``bootstrap_pvalue``). ``vs_baseline`` reads "≈ baseline" when every available test gives p >= 0.05.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import pandas as pd

from dinbench import poolers
from dinbench.config import comparable, config_from_record
from dinbench.errors import DinbenchError
from dinbench.records import Loaded
from dinbench.stats import mean_ci, paired_bootstrap_gauc, paired_t_pvalue, rank_desc
from dinbench.tables import md_table, pm

FORMATS = ("table", "markdown", "csv", "latex", "json")


def config_id(key: dict[str, Any]) -> str:
    """A short id of a comparable config. Pooler options left the shared config when they became the
    poolers' own; hashing them as the defaults older records held keeps every config id unchanged."""
    salted = {**key, "pooler_options": poolers.LEGACY_DEFAULTS}
    return hashlib.sha1(json.dumps(salted, sort_keys=True).encode()).hexdigest()[:8]


TUNED = " (tuned)"  # label suffix of runs at a study's best settings (dinbench run --tuned)


def _grouping(r: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(comparable config, pooler label) of a record. A tuned run's searched axes differ from pooler to
    pooler by design: its config leaves them out and names the study instead, so the poolers of one
    study share a group (and a baseline), apart from every untuned run."""
    key = comparable(r["config"])
    tuned = r.get("tuning")
    if not tuned:
        return key, poolers.label(r["pooler"], config_from_record(r["config"]).pooler_options)
    key = {k: v for k, v in key.items() if k not in tuned.get("searched", [])}
    key["tuned_study"] = f"{tuned.get('db')}"
    return key, poolers.canonical(r["pooler"]) + TUNED


def baseline_label(label: str, baseline: str) -> str:
    """The baseline's label in the group of ``label``: 'average (tuned)' among tuned runs."""
    return baseline + TUNED if label.endswith(TUNED) else baseline


def runs_frame(loaded: list[Loaded]) -> pd.DataFrame:
    rows = []
    for item in loaded:
        r = item.record
        if r.get("status") != "completed":
            continue
        test_file = (r.get("predictions") or {}).get("test")
        predictions = str(item.path.parent / test_file) if test_file else None
        key, label = _grouping(r)
        rows.append(
            {
                "dataset": r["dataset"]["name"],
                "fingerprint": r["dataset"]["fingerprint"],
                "protocol": r["config"].get("protocol", "din"),
                "architecture": r["config"].get("architecture", "ranking"),
                "config": config_id(key),
                "config_json": json.dumps(key, sort_keys=True),
                "pooler": label,
                "seed": r["seed"],
                "auc": r["test"]["auc"],
                "gauc": r["test"]["gauc"],
                "logloss": r["test"]["logloss"],
                "best_epoch": r["best_epoch"],
                "rows_per_s": r.get("train_rows_per_s") or np.nan,
                "wall_seconds": r.get("wall_seconds", np.nan),
                "run_id": r["run_id"],
                "predictions": predictions,
            }
        )
    return pd.DataFrame(rows)


def select_runs(runs: pd.DataFrame, dataset: str | None = None, pooler: str | None = None,
                results_dir: object = "the results folder") -> pd.DataFrame:
    """The runs of ``dataset`` (comma-separated names) and ``pooler`` (comma-separated specs, as
    ``--pooler`` reads them); None or '' keeps every one.

    Raises DinbenchError when ``runs`` is empty (naming ``results_dir``) or when nothing matches.
    """
    if runs.empty:
        raise DinbenchError(f"no completed run records in {results_dir}/; make some with: dinbench run")
    if dataset:
        runs = runs[runs["dataset"].isin([d.strip() for d in dataset.split(",")])]
    if pooler:
        runs = runs[runs["pooler"].str.removesuffix(TUNED).isin(set(poolers.expand(pooler)))]  # tuned rows too
    if runs.empty:
        raise DinbenchError("no run records match the --dataset/--pooler filters")
    return runs


def build(runs: pd.DataFrame, baseline: str, dataset: str | None = None, pooler: str | None = None,
          results_dir: object = "the results folder", n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """What ``dinbench report`` tabulates: ``select_runs``, then the latest run per seed, then
    ``summarize``. Returns ``(runs, table, notes)``; notes name set-aside duplicates and datasets
    run under several configurations."""
    runs, duplicates = latest_per_seed(select_runs(runs, dataset, pooler, results_dir))
    table = summarize(runs, baseline=baseline, n_boot=n_boot)
    return runs, table, [*duplicates, *config_differences(runs)]


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


def latest_per_seed(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep one run per (dataset, protocol, config, architecture, pooler, seed): the latest.

    Running the same command twice must not count as twice the repeats: a seed is one repeat.
    Returns the kept runs and one note per group that had duplicates (how many were set aside).
    """
    if runs.empty:
        return runs, []
    keys = ["dataset", "protocol", "config", "architecture", "pooler", "seed"]
    ordered = runs.sort_values("run_id")  # run ids start with the start time, so the last is the latest
    dup = ordered.duplicated(keys, keep="last")
    notes = [
        f"{dataset} {pooler} seed {seed}: {n + 1} runs of the same configuration; the latest is used, "
        f"{n} older one(s) set aside"
        for (dataset, pooler, seed), n in ordered[dup].groupby(["dataset", "pooler", "seed"]).size().items()
    ]
    return ordered[~dup].sort_index(), notes


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


def summarize(runs: pd.DataFrame, baseline: str = "average", n_boot: int = 1000) -> pd.DataFrame:
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
    base = table[table["pooler"].isin([baseline, baseline + TUNED])].set_index(scope)
    gauc_base = [base["gauc_mean"].get(tuple(k), np.nan) for k in table[scope].values]
    auc_base = [base["auc_mean"].get(tuple(k), np.nan) for k in table[scope].values]
    table["relaimpr_gauc"] = [relaimpr(v, b) for v, b in zip(table["gauc_mean"], gauc_base)]
    table["relaimpr_auc"] = [relaimpr(v, b) for v, b in zip(table["auc_mean"], auc_base)]
    add_statistics(table, runs, baseline, n_boot=n_boot)
    return table.sort_values(
        ["dataset", "protocol", "config", "architecture", "gauc_mean"], ascending=[True, True, True, True, False]
    )


SCOPE = ["dataset", "protocol", "config", "architecture"]


def compare(own: pd.DataFrame, other: pd.DataFrame, n_boot: int, cache: dict) -> tuple[float, float, str]:
    """Two-sided p-values of ``own`` against ``other`` (runs of two poolers in one group) and the flag.

    ``(p_seeds, p_bootstrap, flag)``: paired t-test over common seeds, paired bootstrap over test users;
    flag "≈" when every available test gives p >= 0.05, else "better" or "worse", "" when none is available.
    """
    mine, theirs = own.groupby("seed")["gauc"].mean(), other.groupby("seed")["gauc"].mean()
    common = mine.index.intersection(theirs.index)
    ps = paired_t_pvalue(mine[common].to_numpy(), theirs[common].to_numpy())
    pb = bootstrap_pvalue(own, other, n_boot, cache)
    available = [p for p in (ps, pb) if np.isfinite(p)]
    if not available:
        return ps, pb, ""
    if all(p >= 0.05 for p in available):
        return ps, pb, "≈"
    return ps, pb, "better" if own["gauc"].mean() > other["gauc"].mean() else "worse"


def add_statistics(table: pd.DataFrame, runs: pd.DataFrame, baseline: str, n_boot: int = 1000) -> None:
    """Add gauc_ci_low/high, rank, p_seeds, p_bootstrap, vs_baseline and vs_best to ``table`` (in place).

    ``vs_best`` compares each pooler with the top-ranked pooler of its group by the same two tests:
    "≈ best (p …)" when neither separates them at 0.05, so ties at the top are flagged, not hidden.
    """
    keys = [*SCOPE, "pooler"]
    groups = {k: g for k, g in runs.groupby(keys, sort=True)}
    ci_low, ci_high, p_seeds, p_boot, flags = [], [], [], [], []
    cache: dict[str, pd.DataFrame | None] = {}
    for row in table[keys].itertuples(index=False):
        key = tuple(row)
        own = groups[key]
        _, _, lo, hi = mean_ci(own["gauc"])
        ci_low.append(lo)
        ci_high.append(hi)
        base_key = (*key[:-1], baseline_label(key[-1], baseline))
        if key[-1] == base_key[-1] or base_key not in groups:
            p_seeds.append(np.nan)
            p_boot.append(np.nan)
            flags.append("baseline" if key[-1] == base_key[-1] else "")
            continue
        ps, pb, flag = compare(own, groups[base_key], n_boot, cache)
        p_seeds.append(ps)
        p_boot.append(pb)
        flags.append("≈ baseline" if flag == "≈" else flag)
    table["gauc_ci_low"], table["gauc_ci_high"] = ci_low, ci_high
    table["rank"] = 0
    for _, idx in table.groupby(SCOPE, sort=False).groups.items():
        table.loc[idx, "rank"] = rank_desc(table.loc[idx, "gauc_mean"].to_numpy())
    table["rank"] = table["rank"].astype(int)
    table["p_seeds"], table["p_bootstrap"], table["vs_baseline"] = p_seeds, p_boot, flags
    best_of = {scope: g.sort_values("gauc_mean", ascending=False)["pooler"].iloc[0]  # NaN sorts last
               for scope, g in table.groupby(SCOPE, sort=False)}
    vs_best = []
    for row in table[[*keys, "rank"]].itertuples(index=False):
        key = tuple(row)[:-1]
        best = best_of[key[:-1]]
        if row.rank == 1 or key[-1] == best:
            vs_best.append("best")
            continue
        ps, pb, flag = compare(groups[key], groups[(*key[:-1], best)], n_boot, cache)
        finite = [x for x in (ps, pb) if np.isfinite(x)]
        shown = f" (p {_p(min(finite))})" if finite else ""
        vs_best.append({"≈": "≈ best", "": "—"}.get(flag, "below best") + shown)
    table["vs_best"] = vs_best


def _read_predictions(path, cache: dict) -> pd.DataFrame | None:
    if path is None or (isinstance(path, float) and np.isnan(path)):
        return None
    if path not in cache:
        try:
            cache[path] = pd.read_parquet(path, columns=["user", "label", "score"])
        except (OSError, ValueError):
            cache[path] = None
    return cache[path]


def bootstrap_pvalue(own: pd.DataFrame, base: pd.DataFrame, n_boot: int, cache: dict) -> float:
    """Paired bootstrap over test users of GAUC(pooler) - GAUC(baseline), on saved test predictions.

    Uses the predictions of ONE seed: the lowest seed for which both the pooler and the baseline
    have a predictions file (seed 0 when both ran it), not an average over seeds. NaN ("—" in
    tables) when no such seed exists (e.g. records written before predictions were saved) or the
    two files are not over the same test samples.
    """
    if "predictions" not in own or "predictions" not in base:
        return float("nan")
    mine = own.dropna(subset=["predictions"]).sort_values(["seed", "run_id"]).drop_duplicates("seed")
    theirs = base.dropna(subset=["predictions"]).sort_values(["seed", "run_id"]).drop_duplicates("seed")
    for seed in sorted(set(mine["seed"]) & set(theirs["seed"])):
        a = _read_predictions(mine.loc[mine["seed"] == seed, "predictions"].iloc[0], cache)
        b = _read_predictions(theirs.loc[theirs["seed"] == seed, "predictions"].iloc[0], cache)
        if a is None or b is None:
            continue
        if len(a) != len(b) or not (np.array_equal(a["user"], b["user"]) and np.array_equal(a["label"], b["label"])):
            return float("nan")
        _, p = paired_bootstrap_gauc(a["user"].to_numpy(), a["label"].to_numpy(), a["score"].to_numpy(),
                                     b["score"].to_numpy(), n_boot=n_boot, seed=int(seed))
        return p
    return float("nan")


def _pct(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:+.2f}%"


def _ci(lo: float, hi: float) -> str:
    return "—" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:.4f}, {hi:.4f}]"


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


STAT_HEADERS = ("95% CI (GAUC)", "rank", "p (seeds)", "p (bootstrap)", "vs baseline", "vs best")


LABEL_COLUMNS = ("dataset", "protocol", "config", "architecture", "pooler")


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]], dict[str, str]]:
    """Header and formatted rows for human-readable tables.

    Label columns other than dataset and pooler that hold one value for every row are left out
    and returned as ``constants`` (shown once, under the table), which keeps tables narrow.
    """
    labels = [c for c in LABEL_COLUMNS if c in ("dataset", "pooler") or table[c].nunique() > 1]
    constants = {c: str(table[c].iloc[0]) for c in LABEL_COLUMNS if c not in labels and not table.empty}
    header = [*labels, "seeds", "test AUC", "test GAUC", *STAT_HEADERS[:1], "RelaImpr (GAUC)", *STAT_HEADERS[1:],
              "best epoch", "train rows/s"]
    rows = []
    for _, r in table.iterrows():
        rows.append([
            *(str(r[c]) for c in labels),
            str(int(r["seeds"])),
            pm(r["auc_mean"], r["auc_std"], missing=None), pm(r["gauc_mean"], r["gauc_std"], missing=None),
            _ci(r.get("gauc_ci_low", np.nan), r.get("gauc_ci_high", np.nan)), _pct(r["relaimpr_gauc"]),
            str(int(r["rank"])) if "rank" in r else "—", _p(r.get("p_seeds", np.nan)),
            _p(r.get("p_bootstrap", np.nan)), str(r.get("vs_baseline", "")) or "—", str(r.get("vs_best", "")) or "—",
            f"{r['best_epoch']:.1f}", "—" if not np.isfinite(r["rows_per_s"]) else f"{r['rows_per_s']:,.0f}",
        ])
    return header, rows, constants


def describe_constants(constants: dict[str, str], baseline: str) -> str:
    parts = [f"{k} {v}" for k, v in constants.items() if k != "config"]
    return "; ".join(["mean ± std over seeds, 95% Student-t CI", f"RelaImpr, rank and two-sided p vs {baseline}",
                      "p (seeds): paired t-test over seeds", "p (bootstrap): paired, over test users, lowest common seed",
                      "vs best: the same tests against the top pooler (smaller p shown)",
                      "p-values not corrected for multiple comparisons",
                      *parts])


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
        return md_table(header, rows) + "\n\n" + describe_constants(constants, baseline) + ".\n"
    if fmt == "latex":
        esc = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$").replace("≈", r"$\approx$")  # noqa: E731
        n_labels = sum(1 for h in header if h in LABEL_COLUMNS)
        lines = [r"\begin{tabular}{" + "l" * n_labels + "r" * (len(header) - n_labels) + "}", r"\toprule",
                 " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(esc(c) for c in row) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
