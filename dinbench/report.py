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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinbench import poolers
from dinbench.config import comparable, config_from_record
from dinbench.errors import DinbenchError
from dinbench.formats import FORMATS  # noqa: F401  (defined without pandas: --help lists them)
from dinbench.records import Loaded, peak_mb
from dinbench.metrics import gauc_parts
from dinbench.stats import mean_ci, paired_bootstrap_many, paired_t_pvalue, rank_desc
from dinbench.tables import md_table, pm


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


def tuned_settings(r: dict[str, Any]) -> str:
    """A tuned run's chosen values of the axes its study searched ("lr=0.0012, attention_hidden=80-40"),
    from its config (shared axes) or its pooler's options; "" for an untuned run."""
    tuned = r.get("tuning")
    if not tuned:
        return ""
    config, own = r["config"], r["config"].get("pooler_options") or {}
    return ", ".join(f"{name}={_shown(config[name] if name in config else own.get(name))}"
                     for name in tuned.get("searched", []))


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
                "peak_mb": np.nan if (peak := peak_mb(r)) is None else peak,
                "wall_seconds": r.get("wall_seconds", np.nan),
                "run_id": r["run_id"],
                "predictions": predictions,
                "settings": tuned_settings(r),
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


def _differing(configs: dict[str, dict[str, Any]]) -> list[str]:
    keys = sorted(set().union(*configs.values()))
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]


def _dataset_configs(runs: pd.DataFrame):
    """(dataset, {config id: comparable config}) for every dataset of ``runs``."""
    if runs.empty or "config_json" not in runs:
        return
    for dataset, group in runs.groupby("dataset", sort=True):
        yield dataset, {cid: json.loads(text) for cid, text in zip(group["config"], group["config_json"])}


def config_differences(runs: pd.DataFrame) -> list[str]:
    """One note per dataset whose runs used more than one configuration, naming the fields that differ."""
    notes = []
    for dataset, configs in _dataset_configs(runs):
        if len(configs) < 2:
            continue
        notes.append(
            f"dataset '{dataset}' has runs under {len(configs)} configurations ({', '.join(sorted(configs))}) "
            f"differing in {', '.join(_differing(configs))}: they are separate rows, never averaged together"
        )
    return notes


# How a config label names a field ("batch 256"); the others by their name with spaces.
FIELD_NAMES = {"batch_size": "batch", "embedding_dim": "dim", "mlp_hidden": "mlp", "mlp_activation": "activation",
               "lr_decay_steps": "lr decay every", "l2_minibatch": "l2"}
# Fields with a label column of their own in every table.
OWN_COLUMNS = ("dataset", "protocol")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(_shown(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_shown(v)}" for k, v in sorted(value.items()))
    return "—" if value is None else str(value)


def config_labels(runs: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(dataset, config id) -> the fields in which the config differs from the other configs of its
    dataset, with its values: "batch 256", "optimizer adam, lr 0.01"; "" where the dataset has one
    config (or its configs differ only in protocol, a column of its own)."""
    labels = {}
    for dataset, configs in _dataset_configs(runs):
        differ = [k for k in _differing(configs) if k not in OWN_COLUMNS] if len(configs) > 1 else []
        for cid, cfg in configs.items():
            labels[(dataset, cid)] = ", ".join(_label_part(k, cfg) for k in differ if _labelled(k, cfg))
    return labels


def _labelled(key: str, cfg: dict[str, Any]) -> bool:
    """Whether a differing field names this config: not a study's searched axis (absent from a tuned
    config: each pooler's own value is in the settings column), not 'tuned study' of an untuned one."""
    return key in cfg and (cfg[key] is not None or key != "tuned_study")


def _label_part(key: str, cfg: dict[str, Any]) -> str:
    if key == "tuned_study":  # the study by its name, not its file: 'tuned in study fair8'
        return f"tuned in study {Path(str(cfg[key])).stem}"
    return f"{FIELD_NAMES.get(key, key.replace('_', ' '))} {_shown(cfg.get(key))}"


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
    if "peak_mb" not in runs:  # a frame made elsewhere than runs_frame (older callers, tests)
        runs = runs.assign(peak_mb=np.nan)
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
        peak_mb=("peak_mb", "max"),
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
    labels = config_labels(runs)
    table["config_label"] = [labels.get((d, c), "") for d, c in zip(table["dataset"], table["config"])]
    if "settings" in runs and runs["settings"].astype(bool).any():  # tuned rows: each pooler's chosen settings
        table["settings"] = [s for s in g["settings"].first()]
    return table.sort_values(
        ["dataset", "protocol", "config", "architecture", "gauc_mean"], ascending=[True, True, True, True, False]
    )


SCOPE = ["dataset", "protocol", "config", "architecture"]


def compare(own: pd.DataFrame, other: pd.DataFrame, p_bootstrap: float,
            d_bootstrap: float = float("nan")) -> tuple[float, float, str]:
    """Two-sided p-values of ``own`` against ``other`` (runs of two poolers in one group) and the flag.

    ``(p_seeds, p_bootstrap, flag)``: paired t-test over common seeds, paired bootstrap over test users
    (computed beforehand, see ``Bootstraps``; ``d_bootstrap`` its observed GAUC difference, own - other,
    on the one seed it uses); flag "≈" when every available test gives p >= 0.05, "" when none is
    available, else the direction of the tests that separate the two: "better" or "worse" when they
    agree, "mixed" when they do not (e.g. the seeds say better, the one bootstrapped seed worse).
    A test's direction is its own difference (the mean over common seeds; the bootstrapped seed's),
    not the difference of the means over all seeds.
    """
    mine, theirs = own.groupby("seed")["gauc"].mean(), other.groupby("seed")["gauc"].mean()
    common = mine.index.intersection(theirs.index)
    ps = paired_t_pvalue(mine[common].to_numpy(), theirs[common].to_numpy())
    pb = p_bootstrap
    available = [p for p in (ps, pb) if np.isfinite(p)]
    if not available:
        return ps, pb, ""
    if all(p >= 0.05 for p in available):
        return ps, pb, "≈"
    d_seeds = float(mine[common].mean() - theirs[common].mean()) if len(common) else float("nan")
    signs = {np.sign(d) for p, d in ((ps, d_seeds), (pb, d_bootstrap)) if np.isfinite(p) and p < 0.05 and np.isfinite(d)}
    if not signs:  # a significant test without a known direction (a caller without d_bootstrap)
        signs = {np.sign(own["gauc"].mean() - other["gauc"].mean())}
    if len(signs) > 1:
        return ps, pb, "mixed"
    return ps, pb, "better" if signs.pop() > 0 else "worse"


def add_statistics(table: pd.DataFrame, runs: pd.DataFrame, baseline: str, n_boot: int = 1000) -> None:
    """Add gauc_ci_low/high, rank, p_seeds, p_bootstrap, vs_baseline and vs_best to ``table`` (in place).

    ``vs_best`` compares each pooler with the top-ranked pooler of its group by the same two tests:
    "≈ best (p …)" when neither separates them at 0.05, so ties at the top are flagged, not hidden.
    Every bootstrap the table needs is planned first and run together (``Bootstraps``).
    """
    keys = [*SCOPE, "pooler"]
    groups = {k: g for k, g in runs.groupby(keys, sort=True)}
    ranks = pd.Series(0, index=table.index)
    for _, idx in table.groupby(SCOPE, sort=False).groups.items():
        ranks[idx] = rank_desc(table.loc[idx, "gauc_mean"].to_numpy())
    best_of = {scope: g.sort_values("gauc_mean", ascending=False)["pooler"].iloc[0]  # NaN sorts last
               for scope, g in table.groupby(SCOPE, sort=False)}
    rows = [(tuple(r), int(k)) for r, k in zip(table[keys].itertuples(index=False), ranks)]
    boot = Bootstraps(n_boot)
    for key, rank in rows:
        base_key, best_key = (*key[:-1], baseline_label(key[-1], baseline)), (*key[:-1], best_of[key[:-1]])
        if key[-1] != base_key[-1] and base_key in groups:
            boot.plan(groups[key], groups[base_key])
        if rank != 1 and key != best_key:
            boot.plan(groups[key], groups[best_key])
    boot.run()
    ci_low, ci_high, p_seeds, p_boot, flags, vs_best = [], [], [], [], [], []
    for key, rank in rows:
        own = groups[key]
        _, _, lo, hi = mean_ci(own["gauc"])
        ci_low.append(lo)
        ci_high.append(hi)
        base_key = (*key[:-1], baseline_label(key[-1], baseline))
        if key[-1] == base_key[-1] or base_key not in groups:
            p_seeds.append(np.nan)
            p_boot.append(np.nan)
            flags.append("baseline" if key[-1] == base_key[-1] else "")
        else:
            ps, pb, flag = compare(own, groups[base_key], boot.p(own, groups[base_key]), boot.diff(own, groups[base_key]))
            p_seeds.append(ps)
            p_boot.append(pb)
            flags.append("≈ baseline" if flag == "≈" else flag)
        best_key = (*key[:-1], best_of[key[:-1]])
        if rank == 1 or key == best_key:
            vs_best.append("best")
            continue
        ps, pb, flag = compare(own, groups[best_key], boot.p(own, groups[best_key]), boot.diff(own, groups[best_key]))
        finite = [x for x in (ps, pb) if np.isfinite(x)]
        shown = f" (p {_p(min(finite))})" if finite else ""
        vs_best.append({"≈": "≈ best", "": "—"}.get(flag, "below best") + shown)
    table["gauc_ci_low"], table["gauc_ci_high"] = ci_low, ci_high
    table["rank"] = ranks.astype(int)
    table["p_seeds"], table["p_bootstrap"], table["vs_baseline"] = p_seeds, p_boot, flags
    table["vs_best"] = vs_best


def _read_predictions(path, cache: dict) -> dict[str, np.ndarray] | None:
    """A run's test predictions as numpy columns (user, label, score), or None when unreadable.
    pyarrow directly, not pandas: a report reads one file per compared seed, and the frame is
    never needed."""
    if path is None or (isinstance(path, float) and np.isnan(path)):
        return None
    if path not in cache:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path, columns=["user", "label", "score"])
            cache[path] = {c: table.column(c).to_numpy() for c in ("user", "label", "score")}
        except (OSError, ValueError, KeyError):  # pyarrow's errors derive from these
            cache[path] = None
    return cache[path]


class Bootstraps:
    """The paired bootstraps over test users of a table (see ``bootstrap_pvalue``), run together.

    ``plan(own, other)`` for every pair first, then ``run()``, then ``p(own, other)``. Each
    predictions file is read and split into per-user AUCs once, and the pairs over the same test
    users and seed share one set of resamples (``stats.paired_bootstrap_many``): the p-values are
    exactly those of bootstrapping each pair on its own, for a fraction of the time.
    """

    def __init__(self, n_boot: int) -> None:
        self.n_boot = n_boot
        self._frames: dict = {}  # path -> predictions (or None)
        self._parts: dict[str, tuple | None] = {}  # path -> (users, labels, impressions, AUC per user)
        self._planned: dict[tuple[str, str], tuple[str, str, int] | None] = {}  # run-id pair -> (file, file, seed)
        self._p: dict[tuple[str, str], float] = {}
        self._d: dict[tuple[str, str], float] = {}  # the observed GAUC difference (own - other) on that seed
        self._seeds: dict[str, dict[int, str]] = {}  # runs key -> seed -> predictions file

    def _key(self, runs: pd.DataFrame) -> str:
        """A name for the runs of one pooler, and (once) the predictions file of each of its seeds:
        the first run id's, per seed."""
        key = ",".join(sorted(runs["run_id"]))
        if key not in self._seeds:
            files: dict[int, str] = {}
            if "predictions" in runs:
                for seed, _, path in sorted(zip(runs["seed"], runs["run_id"], runs["predictions"])):
                    if isinstance(path, str):
                        files.setdefault(int(seed), path)
            self._seeds[key] = files
        return key

    def _pair(self, own: pd.DataFrame, other: pd.DataFrame) -> tuple[str, str]:
        return self._key(own), self._key(other)

    def _files(self, pair: tuple[str, str]) -> tuple[str, str, int] | None:
        """The two predictions files of the lowest seed both have (with that seed), or None."""
        mine, theirs = self._seeds[pair[0]], self._seeds[pair[1]]
        for seed in sorted(set(mine) & set(theirs)):
            if self._user_parts(mine[seed]) is None or self._user_parts(theirs[seed]) is None:
                continue
            return mine[seed], theirs[seed], seed
        return None

    def _user_parts(self, path):
        if path not in self._parts:
            frame = _read_predictions(path, self._frames)
            if frame is None:
                self._parts[path] = None
            else:
                users, labels = frame["user"], frame["label"]
                _, w, auc_u = gauc_parts(users, labels, frame["score"])
                self._parts[path] = (users, labels, w, auc_u)
        return self._parts[path]

    def plan(self, own: pd.DataFrame, other: pd.DataFrame) -> None:
        pair = self._pair(own, other)
        if pair not in self._planned:
            self._planned[pair] = self._files(pair)

    def run(self) -> None:
        batches: dict[tuple, list] = {}
        for pair, files in self._planned.items():
            if files is None:
                self._p[pair] = float("nan")
                continue
            (ua, ya, w, auc_a), (ub, yb, _, auc_b) = self._user_parts(files[0]), self._user_parts(files[1])
            if len(ua) != len(ub) or not (np.array_equal(ua, ub) and np.array_equal(ya, yb)):
                self._p[pair] = float("nan")  # not over the same test samples
                continue
            ok = np.isfinite(auc_a) & np.isfinite(auc_b)
            key = (files[2], hashlib.sha1(np.ascontiguousarray(ua).tobytes() + np.ascontiguousarray(ya).tobytes()
                                          + ok.tobytes()).hexdigest())
            batches.setdefault(key, []).append((pair, w[ok], auc_a[ok], auc_b[ok]))
        for (seed, _), items in batches.items():
            results = paired_bootstrap_many(items[0][1], [(a, b) for _, _, a, b in items], n_boot=self.n_boot,
                                            seed=seed)
            for (pair, *_), (d, p) in zip(items, results):
                self._p[pair], self._d[pair] = p, d

    def p(self, own: pd.DataFrame, other: pd.DataFrame) -> float:
        return self._p[self._pair(own, other)]

    def diff(self, own: pd.DataFrame, other: pd.DataFrame) -> float:
        """GAUC(own) - GAUC(other) on the seed ``p`` bootstrapped; NaN where it has no p."""
        return self._d.get(self._pair(own, other), float("nan"))


def bootstrap_pvalue(own: pd.DataFrame, base: pd.DataFrame, n_boot: int) -> float:
    """Paired bootstrap over test users of GAUC(pooler) - GAUC(baseline), on saved test predictions.

    Uses the predictions of ONE seed: the lowest seed for which both the pooler and the baseline
    have a predictions file (seed 0 when both ran it), not an average over seeds. NaN ("—" in
    tables) when no such seed exists (e.g. records written before predictions were saved) or the
    two files are not over the same test samples.
    """
    boot = Bootstraps(n_boot)
    boot.plan(own, base)
    boot.run()
    return boot.p(own, base)


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

P_COLUMNS = ("p_seeds", "p_bootstrap")


def _config_cell(r) -> str:
    """The config column of the wide table: the differing fields (``config_label``), else the id."""
    label = r.get("config_label", "")
    return label if isinstance(label, str) and label else str(r["config"])


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]], dict[str, str]]:
    """Header and formatted rows of the wide table (``report --wide``, markdown, LaTeX): every column.

    Label columns other than dataset and pooler that hold one value for every row are left out
    and returned as ``constants`` (shown once, under the table), which keeps tables narrow. The
    config column names the fields the configurations differ in (``config_labels``), not their ids.
    """
    labels = [c for c in LABEL_COLUMNS if c in ("dataset", "pooler") or table[c].nunique() > 1]
    constants = {c: str(table[c].iloc[0]) for c in LABEL_COLUMNS if c not in labels and not table.empty}
    settings = "settings" in table and table["settings"].astype(bool).any()  # tuned rows (dinbench tune)
    header = [*labels, *(["settings"] if settings else []), "seeds", "test AUC", "test GAUC", *STAT_HEADERS[:1],
              "RelaImpr (GAUC)", *STAT_HEADERS[1:], "best epoch", "train rows/s",
              "peak MB"]
    rows = []
    for _, r in table.iterrows():
        rows.append([
            *(_config_cell(r) if c == "config" else str(r[c]) for c in labels),
            *([str(r["settings"]) or "—"] if settings else []),
            str(int(r["seeds"])),
            pm(r["auc_mean"], r["auc_std"], missing=None), pm(r["gauc_mean"], r["gauc_std"], missing=None),
            _ci(r.get("gauc_ci_low", np.nan), r.get("gauc_ci_high", np.nan)), _pct(r["relaimpr_gauc"]),
            str(int(r["rank"])) if "rank" in r else "—", _p(r.get("p_seeds", np.nan)),
            _p(r.get("p_bootstrap", np.nan)), str(r.get("vs_baseline", "")) or "—", str(r.get("vs_best", "")) or "—",
            f"{r['best_epoch']:.1f}", "—" if not np.isfinite(r["rows_per_s"]) else f"{r['rows_per_s']:,.0f}",
            "—" if not np.isfinite(r.get("peak_mb", np.nan)) else f"{r['peak_mb']:,.0f}",
        ])
    return header, rows, constants


COMPACT_HEADERS = ("pooler", "seeds", "test GAUC", "95% CI", "RelaImpr", "p", "vs best")


def _smaller_p(r) -> float:
    finite = [p for p in (r.get("p_seeds", np.nan), r.get("p_bootstrap", np.nan)) if np.isfinite(p)]
    return min(finite) if finite else float("nan")


def _verdict(vs_best) -> str:
    """The compact table's "vs best": best, ≈ best (no test separates it from the top pooler at
    0.05), below; its p-value is in the wide table."""
    text = str(vs_best or "")
    return next((v for v in ("best", "≈ best", "below best") if text.startswith(v)), "—").replace("below best", "below")


def compact_rows(table: pd.DataFrame) -> list[tuple[str, list[list[str]], list[int]]]:
    """The default terminal table, per dataset: ``(dataset, rows, group_ends)``.

    Rows hold the cells of ``COMPACT_HEADERS``: the pooler (with the configuration fields, protocol
    and architecture that tell its row apart from the others of its dataset), seeds, test GAUC mean
    ± std, its 95% CI, RelaImpr on GAUC, the smaller p of the two tests against the baseline, and
    the verdict against the best pooler of its group. ``group_ends``: the indices of the rows that
    end a comparable group (rank and "vs best" start again after them).
    """
    out = []
    for dataset, part in table.groupby("dataset", sort=False):
        varies = {c: part[c].nunique() > 1 for c in ("protocol", "config", "architecture")}
        rows, ends, previous = [], [], None
        for i, (_, r) in enumerate(part.iterrows()):
            about = [f"protocol {r['protocol']}" if varies["protocol"] else "",
                     (r.get("config_label") or str(r["config"])) if varies["config"] else "",
                     str(r["architecture"]) if varies["architecture"] else ""]
            about = [a for a in about if a]
            group = tuple(r[c] for c in SCOPE)
            if previous is not None and group != previous:
                ends.append(i - 1)
            previous = group
            rows.append([
                str(r["pooler"]) + (f" ({', '.join(about)})" if about else ""),
                str(int(r["seeds"])),
                pm(r["gauc_mean"], r["gauc_std"], missing=None),
                _ci(r.get("gauc_ci_low", np.nan), r.get("gauc_ci_high", np.nan)),
                _pct(r["relaimpr_gauc"]),
                _p(_smaller_p(r)),
                _verdict(r.get("vs_best", "")),
            ])
        out.append((str(dataset), rows, ends))
    return out


def describe_compact(table: pd.DataFrame, baseline: str) -> str:
    """The caption of the compact table: what its columns mean, and the settings every row shares."""
    constants = display_rows(table)[2] if not table.empty else {}
    parts = [f"{k} {v}" for k, v in constants.items() if k not in ("config", "dataset")]
    return ("; ".join(["test GAUC: mean ± std over seeds, 95% Student-t CI", f"RelaImpr and p vs {baseline}",
                      "p: the smaller of a paired t-test over seeds and a paired bootstrap over test users",
                      "vs best: ≈ best where neither test separates it from the top pooler at p < 0.05",
                      "p-values not corrected for multiple comparisons", *parts])
            + ". Every column (AUC, rank, each p-value, best epoch, speed): dinbench report --wide")


def describe_constants(constants: dict[str, str], baseline: str) -> str:
    parts = [f"{k} {v}" for k, v in constants.items() if k != "config"]
    return "; ".join(["mean ± std over seeds, 95% Student-t CI", f"RelaImpr, rank and two-sided p vs {baseline}",
                      "p (seeds): paired t-test over seeds", "p (bootstrap): paired, over test users, lowest common seed",
                      "vs best: the same tests against the top pooler (smaller p shown)",
                      "p-values not corrected for multiple comparisons",
                      *parts])


def _p_number(p: float) -> str:
    """A p-value for CSV: the number in full (shortest exact decimal, never rounded to 0.000000), '' if none."""
    return np.format_float_positional(float(p), trim="-") if np.isfinite(p) else ""


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
LATEX_MATH = {"<": r"$<$", ">": r"$>$", "±": r"$\pm$", "≈": r"$\approx$"}


def latex_escape(text: str) -> str:
    """``text`` for a LaTeX table cell under any font encoding: special characters escaped, and
    <, >, ±, ≈ as math (in text mode pdflatex's default OT1 encoding prints '<' as '¡')."""
    return "".join(LATEX_MATH.get(ch) or LATEX_SPECIAL.get(ch, ch) for ch in text)


def render(table: pd.DataFrame, fmt: str, baseline: str) -> str:
    """Text of the table in ``fmt`` (markdown, csv, latex, json): every column. ``table`` (the
    terminal's) is drawn by dinbench.ui from ``compact_rows`` or ``display_rows``."""
    if fmt == "csv":
        out = table.copy()
        for c in P_COLUMNS:
            if c in out:
                out[c] = [_p_number(p) for p in out[c]]
        buf = io.StringIO()
        out.to_csv(buf, index=False, float_format="%.6f")
        return buf.getvalue()
    if fmt == "json":
        return json.dumps(json.loads(table.to_json(orient="records")), indent=2) + "\n"
    header, rows, constants = display_rows(table)
    if fmt == "markdown":
        return md_table(header, rows) + "\n\n" + describe_constants(constants, baseline) + ".\n"
    if fmt == "latex":
        n_labels = sum(1 for h in header if h in LABEL_COLUMNS or h == "settings")
        lines = [r"\begin{tabular}{" + "l" * n_labels + "r" * (len(header) - n_labels) + "}", r"\toprule",
                 " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}")
