"""What ``dinbench report --plots DIR`` and ``--output DIR`` write: figures, tables, report.md.

    DIR/report.md            the whole report: tables, the paper side by side, every figure embedded
    DIR/table.{md,csv,tex,json}
    DIR/plots/*.png, *.svg   (with --plots DIR alone: the figures, straight into DIR)

Figures are made per comparable group (dataset, protocol, configuration, architecture), the same
groups the table ranks within. The attention figures load the saved models of the runs and need
the prepared dataset they were trained on (same fingerprint); where it is missing they are left
out with a note saying how to get them. Every file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from dinbench import analysis, paper, poolers, report
from dinbench.atomic import write_atomic
from dinbench.errors import DinbenchError
from dinbench.records import Loaded

# (relative path, caption) of a figure; notes are lines for the reader (what was left out, and why)
Figure = tuple[str, str]


@dataclass
class Section:
    """One comparable group's figures and small tables."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, str]] = field(default_factory=list)  # (heading, markdown)
    notes: list[str] = field(default_factory=list)


def _slug(*parts: str) -> str:
    return "_".join(p.replace(":", "-").replace("/", "-").replace(" ", "-") for p in parts if p)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _attention_poolers(names) -> list[str]:
    return [p for p in names if poolers.uses_candidate(p)]


def _case_poolers(group_table: pd.DataFrame) -> list[str]:
    """The poolers shown in the case study: each din variant that ran, plus the best other attention pooler."""
    ranked = _attention_poolers(group_table.sort_values("gauc_mean", ascending=False)["pooler"].tolist())
    picked = [p for p in ("din:none", "din:softmax") if p in ranked]
    return picked + [p for p in ranked if p not in picked][:1]


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}" if not np.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def make_figures(
    loaded: list[Loaded],
    runs: pd.DataFrame,
    table: pd.DataFrame,
    plot_dir: Path,
    root: Path,
    load_prepared: Callable[[str, str], object | None],
    progress: Callable[[str], None] = lambda _: None,
) -> list[Section]:
    """Draw every figure for every comparable group of ``runs`` into ``plot_dir``.

    ``load_prepared(dataset, fingerprint)`` returns the prepared dataset the runs were trained on,
    or None (the attention figures are then skipped with a note). Paths in the returned sections
    are relative to ``root``.
    """
    from dinbench import plots

    sections: list[Section] = []
    by_run = {item.record.get("run_id"): item for item in loaded}
    multi = {c: runs[c].nunique() > 1 for c in ("dataset", "protocol", "config", "architecture")}
    for key, group in runs.groupby(report.SCOPE, sort=True):
        dataset, protocol, config, arch = key
        tag = _slug(dataset, protocol if multi["protocol"] else "", config if multi["config"] else "",
                    arch if arch != "ranking" else "")
        label = ", ".join([dataset] + [f"{k} {v}" for k, v in zip(("protocol", "config", "architecture"),
                                                                    (protocol, config, arch)) if multi[k]])
        section = Section(title=label)
        sections.append(section)
        group_table = table[(table[report.SCOPE] == pd.Series(dict(zip(report.SCOPE, key)))).all(axis=1)]

        progress(f"{label}: GAUC by history length")
        by_len = analysis.gauc_by_length(group)
        if not by_len.empty:
            paths = plots.plot_gauc_by_length(by_len, plot_dir / f"gauc-by-length_{tag}", f"Test GAUC by history length ({dataset})")
            section.figures.append((_rel(paths[0], root), "Test GAUC by history-length bucket (mean ± std over seeds); "
                                    "below, the number of test users per bucket."))
            wide = by_len.pivot(index="pooler", columns="bucket", values="gauc_mean")
            wide = wide[[b for b in analysis.bucket_order() if b in wide.columns]]
            users = by_len.groupby("bucket")["users"].max()
            rows = [[p, *(f"{v:.4f}" if np.isfinite(v) else "—" for v in wide.loc[p])] for p in wide.index]
            rows.append(["(test users)", *(f"{int(users[b]):,}" for b in wide.columns)])
            section.tables.append(("Test GAUC by history length (mean over seeds)",
                                   _md_table(["pooler", *wide.columns], rows)))

        progress(f"{label}: learning curves")
        ids = set(group["run_id"])
        curves = analysis.learning_curves([by_run[i] for i in ids if i in by_run])
        if not curves.empty:
            paths = plots.plot_learning_curves(curves, plot_dir / f"learning-curves_{tag}", f"Learning curves ({dataset})")
            section.figures.append((_rel(paths[0], root), "Valid GAUC after each epoch, one line per seed; "
                                    "the marker is the epoch selected on valid (and scored once on test)."))
        else:
            section.notes.append("no learning curves: these runs had no validation split (protocol paper)")

        progress(f"{label}: interest intensity")
        summary, samples = analysis.intensity(group)
        if not samples.empty:
            paths = plots.plot_intensity(samples, summary, plot_dir / f"intensity_{tag}",
                                         f"Summed attention weight, clicked vs not ({dataset})")
            section.figures.append((_rel(paths[0], root), "Distribution of each test sample's summed attention weight "
                                    "(lowest seed), and the AUC of that sum alone as a click predictor."))
            rows = [[r.pooler, str(int(r.seeds)), _pm(r.auc_mean, r.auc_std, 3), _pm(r.gauc_mean, r.gauc_std, 3),
                     f"{r.mean_clicked:.3f}", f"{r.mean_not_clicked:.3f}"] for r in summary.itertuples()]
            section.tables.append(("Interest intensity: the summed weight alone as a predictor (0.5 = no signal; "
                                   "softmax variants sum to 1 and are left out)",
                                   _md_table(["pooler", "seeds", "AUC of the sum", "GAUC of the sum",
                                              "mean sum (clicked)", "mean sum (not clicked)"], rows)))
        elif _attention_poolers(group["pooler"].unique()):
            section.notes.append("no interest-intensity figure: no run here has unnormalised attention weights")

        att = _attention_poolers(group["pooler"].unique())
        if not att:
            continue
        fingerprint = str(group["fingerprint"].iloc[0])
        prepared = load_prepared(dataset, fingerprint)
        if prepared is None:
            section.notes.append(
                f"attention case study left out: the prepared dataset '{dataset}' (fingerprint {fingerprint[:12]}) "
                f"is not in the data folder; prepare it again (or pass --data-dir) to draw it")
            continue
        for pooler in _case_poolers(group_table):
            run = _lowest_seed(group, pooler)
            item = by_run.get(run["run_id"])
            if item is None:
                continue
            progress(f"{label}: attention case study, {pooler}")
            try:
                case = analysis.attention_case(item.path.parent, item.record, prepared)
            except DinbenchError as exc:
                section.notes.append(f"attention case study for {pooler} left out: {exc}")
                continue
            if case.empty:
                section.notes.append(f"attention case study for {pooler} left out: no test user fits the rule")
                continue
            paths = plots.plot_attention_case(case, plot_dir / f"attention-case_{tag}_{_slug(pooler)}",
                                              f"{pooler}, seed {run['seed']}: user {case['user'].iloc[0]} ({dataset})")
            section.figures.append((_rel(paths[0], root), f"{pooler}: the weight of each history item for the user's "
                                    "clicked and not-clicked test candidates. The user is the first (by id) with 8-20 "
                                    "history items of 3+ categories and candidates of two categories: chosen from the "
                                    "data, not from any model's scores."))
        if "topic" in getattr(prepared, "items", pd.DataFrame()).columns:
            progress(f"{label}: attention on relevant items")
            rel = _relevance(group, by_run, prepared)
            if not rel.empty:
                paths = plots.plot_relevant_attention(rel, plot_dir / f"relevant-attention_{tag}",
                                                      f"Weight on truly relevant history items ({dataset})")
                section.figures.append((_rel(paths[0], root), "Probability that a history item of the candidate's "
                                        "hidden topic (the generator's ground truth) gets more weight than an "
                                        "unrelated item of the same history; mean ± std over seeds, test split."))
                rows = [[r.pooler, str(int(r.seeds)), _pm(r.relevance_auc_mean, r.relevance_auc_std, 3),
                         _pm(r.weight_share_mean, np.nan, 3), f"{r.relevant_share_mean:.3f}"]
                        for r in rel.sort_values("relevance_auc_mean", ascending=False).itertuples()]
                section.tables.append(("Attention on the truly relevant history items (synthetic ground truth)",
                                       _md_table(["pooler", "seeds", "relevance AUC (0.5 = blind)",
                                                  "weight share on relevant", "share of relevant items"], rows)))
    return sections


def _lowest_seed(group: pd.DataFrame, pooler: str) -> pd.Series:
    return group[group["pooler"] == pooler].sort_values(["seed", "run_id"]).iloc[0]


def _relevance(group: pd.DataFrame, by_run: dict, prepared) -> pd.DataFrame:
    rows = []
    for r in group.itertuples(index=False):
        item = by_run.get(r.run_id)
        if item is None:
            continue
        try:
            m = analysis.relevant_attention(item.path.parent, item.record, prepared)
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


def paper_markdown(table: pd.DataFrame) -> str:
    """For every dataset of ``table`` with published numbers: the references and our matching rows."""
    parts = []
    for dataset in sorted(table["dataset"].unique()):
        refs = paper.references_for(dataset)
        if not refs:
            parts.append(f"- {paper.no_reference_note(dataset)}.")
            continue
        rows = [[r["source"], r["model"], f"`{r['ours']}`", f"{r['gauc']:.4f}",
                 f"{r['auc']:.4f}" if r["auc"] else "—"] for r in refs]
        mine = table[table["dataset"] == dataset]
        wanted = list(dict.fromkeys(r["ours"].split()[0] for r in refs))
        for r in mine[mine["pooler"].isin(wanted)].itertuples():
            rows.append([f"dinbench ({r.protocol}, {r.architecture})", r.pooler, f"`{r.pooler}`",
                         _pm(r.gauc_mean, r.gauc_std), _pm(r.auc_mean, r.auc_std)])
        parts.append(f"**{dataset}** (the paper's {paper.DATASETS[dataset]})\n\n"
                     + _md_table(["source", "model", "dinbench equivalent", "GAUC (paper: AUC)", "AUC"], rows))
    parts.append(paper.PROTOCOL_NOTE)
    return "\n\n".join(parts)


def with_paper_rows(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``source`` column ("dinbench") and the published rows appended (for CSV/JSON)."""
    extra = paper_rows(table)
    return table if extra.empty else pd.concat([table.assign(source="dinbench"), extra], ignore_index=True)


def paper_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Reference rows shaped like ``table`` (for CSV/JSON): source, dataset, pooler, gauc_mean, auc_mean."""
    rows = []
    for dataset in sorted(table["dataset"].unique()):
        for r in paper.references_for(dataset):
            rows.append({"source": f"{r['source']}: {r['model']}", "dataset": dataset, "pooler": r["ours"],
                         "gauc_mean": r["gauc"], "auc_mean": r["auc"] if r["auc"] else np.nan})
    return pd.DataFrame(rows)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_report_dir(
    out_dir: Path,
    loaded: list[Loaded],
    runs: pd.DataFrame,
    table: pd.DataFrame,
    baseline: str,
    *,
    with_paper: bool,
    results_dir: Path,
    load_prepared: Callable[[str, str], object | None],
    progress: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write tables, figures and report.md into ``out_dir``; return the path of report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"md": "table.md", "csv": "table.csv", "tex": "table.tex", "json": "table.json"}
    full = with_paper_rows(table) if with_paper else table
    write_text(out_dir / files["md"], report.render(table, "markdown", baseline))
    write_text(out_dir / files["csv"], report.render(full, "csv", baseline))
    write_text(out_dir / files["tex"], report.render(table, "latex", baseline))
    write_text(out_dir / files["json"], report.render(full, "json", baseline))
    sections = make_figures(loaded, runs, table, out_dir / "plots", out_dir, load_prepared, progress)

    commits = sorted({str(i.record.get("git_commit")) for i in loaded
                      if i.record.get("run_id") in set(runs["run_id"])})
    lines = [
        "# dinbench report",
        "",
        f"{len(runs)} completed runs from `{results_dir}`, written "
        f"{_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; code commit(s) of the runs: "
        + ", ".join(f"`{c[:12]}`" for c in commits) + ".",
        "Model selection on the validation split; test scored once per run. "
        f"Tables also as [CSV]({files['csv']}), [LaTeX]({files['tex']}) and [JSON]({files['json']}).",
        "",
        "## Results",
        "",
        report.render(table, "markdown", baseline).rstrip(),
        "",
    ]
    if with_paper:
        lines += ["## The paper side by side", "", paper_markdown(table), ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for heading, md in section.tables:
            lines += [f"**{heading}**", "", md, ""]
        for path, caption in section.figures:
            alt = Path(path).stem.split("_")[0].replace("-", " ")
            lines += [f"![{alt}]({path})", "", f"*{caption}* ([SVG]({Path(path).with_suffix('.svg').as_posix()}))", ""]
        lines += [f"- {n}" for n in section.notes]
        if section.notes:
            lines.append("")
    path = out_dir / "report.md"
    write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
