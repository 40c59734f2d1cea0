"""What ``dinbench report --plots DIR`` and ``--output DIR`` write: figures, tables, report.md.

    DIR/report.md            the whole report: tables, the paper side by side, every figure embedded
    DIR/table.{md,csv,tex,json}
    DIR/plots/*.png, *.svg   (with --plots DIR alone: the figures, straight into DIR)

Figures (the entries of ``dinbench.figures.FIGURES``, one module each) are made per comparable
group (dataset, protocol, configuration, architecture), the same groups the table ranks within;
``make_figures`` draws each of them for each group. The attention figures load the saved models of the runs and need
the prepared dataset they were trained on (same fingerprint); where it is missing they are left
out with a note saying how to get them. Every file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import pandas as pd

from dinbench import paper, report
from dinbench.atomic import write_atomic
from dinbench.errors import DinbenchError
from dinbench.prepared import contract
from dinbench.records import Loaded
from dinbench.tables import md_table, pm

if TYPE_CHECKING:  # the figures (and through them torch) load only when figures are drawn
    from dinbench.figures import Figure, Group, Section

# --output with one of these suffixes writes one table in that format; any other path is a report directory
from dinbench.formats import TABLE_SUFFIXES  # noqa: E402  (re-exported: report --output decides on it)

__all__ = ["PAPER_COLUMNS", "PreparedCache", "groups", "make_figures", "paper_markdown", "paper_side_by_side",
           "paper_rows", "table_text", "with_paper_rows", "write_report_dir", "write_text"]


class PreparedCache:
    """``load_prepared(dataset, fingerprint)`` for the figures: the prepared dataset under
    ``data_root``, loaded once per (dataset, fingerprint); None when it is not prepared there or
    was prepared again since the runs (another fingerprint). ``load`` is ``contract.load``."""

    def __init__(self, data_root: Path, load: Callable[[Path, str], object] | None = None) -> None:
        self.data_root = Path(data_root)
        self._load = load or contract.load
        self._cache: dict[tuple[str, str], object | None] = {}

    def __call__(self, name: str, fingerprint: str):
        key = (name, fingerprint)
        if key not in self._cache:
            try:
                prepared = self._load(self.data_root, name)
                self._cache[key] = prepared if prepared.fingerprint == fingerprint else None
            except DinbenchError:
                self._cache[key] = None
        return self._cache[key]


def _all_figures():
    from dinbench.figures import FIGURES

    return FIGURES


def groups(
    loaded: list[Loaded],
    runs: pd.DataFrame,
    table: pd.DataFrame,
    plot_dir: Path,
    root: Path,
    load_prepared: Callable[[str, str], object | None],
    progress: Callable[[str], None] = lambda _: None,
) -> Iterator[Group]:
    """The comparable groups of ``runs`` (``report.SCOPE``), each with an empty section to draw into.

    The file-name tag and the title name the protocol, configuration and architecture only where
    ``runs`` holds more than one of them (architecture also when it is not ranking).
    """
    from dinbench.figures import Group, Section
    from dinbench.figures.base import slug

    by_run = {item.record.get("run_id"): item for item in loaded}
    multi = {c: runs[c].nunique() > 1 for c in ("dataset", "protocol", "config", "architecture")}
    for key, group in runs.groupby(report.SCOPE, sort=True):
        dataset, protocol, config, arch = key
        tag = slug(dataset, protocol if multi["protocol"] else "", config if multi["config"] else "",
                   arch if arch != "ranking" else "")
        label = ", ".join([dataset] + [f"{k} {v}" for k, v in zip(("protocol", "config", "architecture"),
                                                                   (protocol, config, arch)) if multi[k]])
        group_table = table[(table[report.SCOPE] == pd.Series(dict(zip(report.SCOPE, key)))).all(axis=1)]
        yield Group(dataset=dataset, label=label, tag=tag, runs=group, table=group_table, by_run=by_run,
                    section=Section(title=label), plot_dir=plot_dir, root=root, load_prepared=load_prepared,
                    progress=progress)


def make_figures(
    loaded: list[Loaded],
    runs: pd.DataFrame,
    table: pd.DataFrame,
    plot_dir: Path,
    root: Path,
    load_prepared: Callable[[str, str], object | None],
    progress: Callable[[str], None] = lambda _: None,
    figures: list[Figure] | None = None,
) -> list[Section]:
    """Draw every figure (``figures``, default ``dinbench.figures.FIGURES``) for every comparable
    group of ``runs`` into ``plot_dir``.

    ``load_prepared(dataset, fingerprint)`` returns the prepared dataset the runs were trained on,
    or None (the attention figures are then skipped with a note); see ``PreparedCache``. Paths in
    the returned sections are relative to ``root``.
    """
    sections = []
    for group in groups(loaded, runs, table, plot_dir, root, load_prepared, progress):
        sections.append(group.section)
        for figure in _all_figures() if figures is None else figures:
            figure.add_to(group)
    return sections


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
                         pm(r.gauc_mean, r.gauc_std), pm(r.auc_mean, r.auc_std)])
        parts.append(f"**{dataset}** (the paper's {paper.DATASETS[dataset]})\n\n"
                     + md_table(["source", "model", "dinbench equivalent", "GAUC (paper: AUC)", "AUC"], rows))
    parts.append(paper.PROTOCOL_NOTE)
    return "\n\n".join(parts)


def with_paper_rows(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``source`` column ("dinbench") and the published rows appended (for CSV/JSON)."""
    extra = paper_rows(table)
    return table if extra.empty else pd.concat([table.assign(source="dinbench"), extra], ignore_index=True)


PAPER_COLUMNS = ("source", "model", "dinbench equivalent", "GAUC", "AUC")


def paper_side_by_side(table: pd.DataFrame) -> list[tuple[str, list[list[str]] | None]]:
    """For the console, per dataset of ``table``: ``(title, rows)`` of the published numbers (cells
    of ``PAPER_COLUMNS``), or ``(note, None)`` where nothing is published for it."""
    out: list[tuple[str, list[list[str]] | None]] = []
    for dataset in sorted(table["dataset"].unique()):
        refs = paper.references_for(dataset)
        if not refs:
            out.append((paper.no_reference_note(dataset), None))
            continue
        rows = [[r["source"], r["model"], r["ours"], f"{r['gauc']:.4f}", f"{r['auc']:.4f}" if r["auc"] else "—"]
                for r in refs]
        out.append((f"published numbers for {paper.DATASETS[dataset]} (GAUC = the paper's AUC)", rows))
    return out


def table_text(table: pd.DataFrame, fmt: str, baseline: str, with_paper: bool) -> tuple[str, str | None]:
    """The table as text in ``fmt`` (``table`` reads as markdown), with the paper's numbers when
    ``with_paper`` (markdown: the side-by-side tables; CSV/JSON: the published rows); and a note
    for the reader, or None (LaTeX gets no paper numbers)."""
    text = report.render(table, "markdown" if fmt == "table" else fmt, baseline)
    if not with_paper:
        return text, None
    if fmt in ("markdown", "table"):
        return text + "\n" + paper_markdown(table) + "\n", None
    if fmt in ("csv", "json"):
        return report.render(with_paper_rows(table), fmt, baseline), None
    if fmt == "latex":
        return text, "--paper adds nothing to LaTeX output; use --format markdown or --output DIR"
    return text, None


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
    """Write tables, figures and report.md into ``out_dir``; return the path of report.md. A folder
    this call made is removed again when writing fails (a full disk) or is interrupted."""
    made = not os.path.lexists(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # the CLI checked its parent exists (paths.check_output_folder)
    try:
        return _write_report_dir(out_dir, loaded, runs, table, baseline, with_paper=with_paper,
                                 results_dir=results_dir, load_prepared=load_prepared, progress=progress)
    except BaseException:
        if made:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _write_report_dir(out_dir, loaded, runs, table, baseline, *, with_paper, results_dir, load_prepared, progress) -> Path:
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
