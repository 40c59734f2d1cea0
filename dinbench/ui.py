"""What the terminal shows: the progress displays, the one-line summaries and the Rich tables.

Imports of pandas and the report code happen inside the functions that print tables, so a command's
``--help`` stays fast. Shared by the commands of dinbench.cli (``run``, ``sweep``, ``run --resume``, ``report``,
``datasets``), so each wires progress and prints tables the same way. Nothing here decides
anything; it only renders what the library computed.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from dinbench import paths, poolers
from dinbench.records import Loaded, peak_mb

if TYPE_CHECKING:
    from dinbench.config import RunConfig


def _report():
    """dinbench.report, imported when a table is made (it needs pandas: not at ``--help``)."""
    from dinbench import report

    return report


def dataset_line(prepared, protocol: str) -> str:
    c = prepared.manifest["counts"]
    return (f"dataset [bold]{prepared.name}[/] ({c['users']:,} users, {c['items']:,} items; "
            f"{c['train_samples']:,} train / {c['valid_samples']:,} valid / {c['test_samples']:,} test samples), "
            f"protocol {protocol}")


def run_label(cfg: RunConfig, with_dataset: bool = False) -> str:
    label = f"{cfg.pooler} seed {cfg.seed}" + (f" {cfg.architecture}" if cfg.architecture != "ranking" else "")
    return f"{cfg.dataset} {label}" if with_dataset else label


def _peak(mb: float | None) -> str:
    return f"peak {mb:,.0f} MB  " if mb is not None else ""


def print_finished(target: Console, label: str, run_dir: Path, record: dict) -> None:
    t = record["test"]
    target.print(
        f"{label}: test AUC {t['auc']:.4f}  GAUC {t['gauc']:.4f}  best epoch {record['best_epoch']}  "
        f"{record['train_rows_per_s']:,.0f} rows/s  {_peak(peak_mb(record))}{record['wall_seconds']:.1f}s -> {run_dir}/record.json",
        soft_wrap=True,
    )


EPOCH = re.compile(r"epoch (\d+)/(\d+)")  # how dinbench.train.progress_stage names the epoch being trained


class EtaColumn(TimeRemainingColumn):
    """'ETA 0:01:23': the time left at the task's recent speed (for a run: to its last epoch, so early
    stopping may end it sooner)."""

    def render(self, task) -> Text:
        shown = super().render(task)
        return Text("ETA ", style=shown.style) + shown


def _columns(*first) -> tuple:
    return (*first, BarColumn(), TextColumn("{task.fields[count]}"), TimeElapsedColumn(), EtaColumn())


class RunLine:
    """One run's line on a RunBoard; called as the run's progress callback ``(stage, done, total)``."""

    def __init__(self, progress: Progress, label: str) -> None:
        self.progress, self.started = progress, False
        self.task = progress.add_task("", total=None, run=label, count="")

    def __call__(self, stage: str, done: int, total: int) -> None:
        m = EPOCH.match(stage)
        epoch, epochs = (int(m[1]), int(m[2])) if m else (1, 1)
        at = dict(description=stage, completed=(epoch - 1) * total + done, total=epochs * total)
        if not self.started:  # a resumed run starts mid-way: its speed counts from here
            self.progress.reset(self.task, **at)  # (reset keeps the task's fields: none given)
            self.started = True
        self.progress.update(self.task, **at, count=f"{done}/{total}")

    def close(self) -> None:
        self.progress.remove_task(self.task)


class RunBoard:
    """A live display: one overall bar and one line per run in progress (``run(label)`` gives its
    progress callback ``(stage, done, total)``). A run's line shows its stage (the epoch, and the valid
    GAUC of the last epoch scored), the batches of this epoch, and its elapsed time and ETA over all its
    epochs; the overall line counts the runs done and gives the ETA of them all."""

    def __init__(self, progress: Progress, total: int, title: str) -> None:
        self.progress, self.console = progress, progress.console
        self.total, self.done = total, 0
        self.overall = progress.add_task("", total=total, run=title, count=f"0/{total} runs")

    def add_run(self, label: str) -> RunLine:
        return RunLine(self.progress, label)

    @contextmanager
    def run(self, label: str) -> Iterator[Callable[[str, int, int], None]]:
        line = self.add_run(label)
        try:
            yield line
        finally:
            line.close()

    def advance(self) -> None:
        self.done += 1
        self.progress.update(self.overall, advance=1, count=f"{self.done}/{self.total} runs")


@contextmanager
def run_board(console: Console, total: int, title: str = "all", clock: Callable[[], float] | None = None) -> Iterator[RunBoard]:
    """A RunBoard on ``console``; ``clock`` (seconds) replaces the real clock (tests)."""
    with Progress(*_columns(TextColumn("[bold]{task.fields[run]}"), TextColumn("{task.description}")),
                  console=console, transient=True, disable=console.quiet, get_time=clock) as progress:
        yield RunBoard(progress, total, title)


def stats_table(stats) -> Table:
    table = Table(title=stats.title)
    table.add_column("count")
    table.add_column("value", justify="right")
    table.add_column("DIN paper", justify="right")
    for row in stats.rows:
        table.add_row(*row)
    return table


def print_table(console: Console, table, title: str, baseline: str, wide: bool = False) -> None:
    """The report table as it fits the terminal: compact by default (``report.compact_rows``, one
    table per dataset), every column with ``wide``. Numbers are never cut: text cells wrap at spaces,
    a compact table too wide for the terminal leaves out its CI column (and says so), and a wide
    table wider than the terminal is drawn at its own width (the terminal wraps the lines)."""
    if table.empty:
        console.print("no completed runs")
        return
    if wide:
        header, rows, constants = _report().display_rows(table)
        t = _table(header, rows, title, _report().describe_constants(constants, baseline),
                   text={*_report().LABEL_COLUMNS, "settings"})
        _print_fitted(console, t)
        return
    console.print(title, highlight=False, soft_wrap=True)
    for dataset, rows, ends in _report().compact_rows(table):
        header, cut = list(_report().COMPACT_HEADERS), []
        while True:
            t = _table(header, rows, dataset, None, text={"pooler"}, ends=ends)
            if _min_width(console, t) <= console.width or len(header) <= 5:
                break
            drop = "95% CI" if "95% CI" in header else "vs best"
            i = header.index(drop)
            header, rows, cut = header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows], [*cut, drop]
        _print_fitted(console, t)
        if cut:
            console.print(f"({' and '.join(cut)} left out to fit {console.width} columns: widen the terminal, or "
                          "dinbench report --wide / --format markdown)", highlight=False)
    console.print(_report().describe_compact(table, baseline), highlight=False, style="dim")


def _table(header: list[str], rows: list[list[str]], title: str, caption: str | None, text: set[str],
           ends: list[int] = ()) -> Table:
    """A Rich table whose number columns never wrap (and so are never cut) and whose text columns
    wrap at spaces only, never inside a word (their minimum width is their longest word)."""
    t = Table(title=title, caption=caption, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
              padding=(0, 1, 0, 0))
    for j, h in enumerate(header):
        cells = [h, *(r[j] for r in rows)]
        words = [w for cell in cells for w in cell.split()] if h in text else cells
        t.add_column(h, justify="left" if h in text or h.startswith("vs ") else "right", no_wrap=h not in text,
                     min_width=max(map(len, words or [""])))
    for i, r in enumerate(rows):
        t.add_row(*r, end_section=i in ends)
    return t


def _fit(console: Console, t: Table) -> int:
    """Share the terminal's spare width among ``t``'s text columns (the first ones first, up to their
    longest cell) by fixing their widths; returns the width to draw ``t`` at (the terminal's, or
    ``t``'s minimum where that is wider)."""
    need = _min_width(console, t)
    spare = max(0, console.width - need)
    for j, col in enumerate(t.columns):
        if col.no_wrap:
            continue
        longest = max(len(cell) for cell in [str(col.header), *map(str, col._cells)])
        extra = min(spare, max(0, longest - (col.min_width or 0)))
        col.width, spare = (col.min_width or 0) + extra, spare - extra
    return max(console.width, need)


def _print_fitted(console: Console, t: Table) -> None:
    """Print ``t`` at the terminal's width, or at its own minimum where that is wider: a line too long
    for the terminal wraps there, but no cell is ever cut."""
    width = _fit(console, t)
    if width <= console.width:
        console.print(t)
        return
    before = console.width
    console.width = width
    try:
        console.print(t)
    finally:
        console.width = before


def _min_width(console: Console, renderable) -> int:
    """The narrowest ``renderable`` can be drawn without cutting, even where that is wider than the terminal."""
    return Measurement.get(console, console.options.update_width(100_000), renderable).minimum


def print_results(console: Console, loaded: list[Loaded], title: str, out: Path) -> None:
    """The end of ``run`` and ``sweep``: the headline of the runs just made (per dataset, the pooler
    with the best mean test GAUC, against the baseline), where the records are, and the command
    that prints the whole table (``dinbench report``: CIs, p-values, every earlier run)."""
    runs = _report().runs_frame(loaded)
    if runs.empty:
        console.print(f"{title}: no run completed; records in {out}/", highlight=False)
        return
    for dataset, part in runs.groupby("dataset", sort=True):
        means = part.groupby(["config", "architecture", "pooler"], sort=True)["gauc"].agg(["mean", "count"])
        (config, arch, pooler), best = means["mean"].idxmax(), means.loc[means["mean"].idxmax()]
        where = (" " + arch) if part["architecture"].nunique() > 1 else ""
        line = (f"{title}, best on {dataset}: {pooler}{where}, test GAUC {best['mean']:.4f}"
                + (f" (mean of {int(best['count'])} seeds)" if best["count"] > 1 else ""))
        base = (config, arch, poolers.BASELINE)
        if pooler != poolers.BASELINE and base in means.index:
            b = means.loc[base, "mean"]
            line += f"; {poolers.BASELINE} {b:.4f}, RelaImpr {_report().relaimpr(best['mean'], b):+.2f}%"
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"records in {out}/; the table (CIs, p-values, every run there): dinbench report"
                  + ("" if out == paths.results_dir() else f" --results-dir {out}"), highlight=False, soft_wrap=True)


def _towers(archs) -> str:
    """The tower architectures of a plan ('two-tower', 'two-tower/three-tower'): those that skip candidate poolers."""
    return "/".join(a for a in archs if a != "ranking")


def print_run_plan(console: Console, exp, planned, where: str, out: Path) -> None:
    where = f"; {where}" if where else ""
    console.print(f"{len(planned.configs)} run(s): {', '.join(planned.specs)} x {exp.seeds} seed(s), preset "
                  f"{exp.preset}, {' and '.join(planned.archs)}{where}; records go to {out}/")
    if planned.two_tower_skipped:
        console.print(f"{_towers(planned.archs)} skips {', '.join(planned.two_tower_skipped)}: they attend to the candidate, "
                      "which the user tower never sees")


def print_sweep_plan(console: Console, exp, planned, todo, plan, out: Path, n_datasets: int) -> None:
    console.print(
        f"{len(planned.configs)} run(s) in the grid: {', '.join(exp.specs)} x {exp.seeds} seed(s) x {n_datasets} "
        f"dataset(s), {' and '.join(exp.archs)}; {len(todo.existing)} already done in {out}/ (skipped), "
        f"{len(todo.configs)} to run on {plan.describe()}; records go to {out}/")
    if planned.two_tower_skipped:
        console.print(f"{_towers(planned.archs)} skips {', '.join(planned.two_tower_skipped)}: they attend to the candidate")
    if any(todo.resume):
        console.print(f"{sum(map(bool, todo.resume))} interrupted run(s) continue from their checkpoints")


def run_sweep(console: Console, sweep_mod, plan, todo, root, out, shipped, with_dataset: bool) -> int:
    """Run the sweep's remaining configs with progress, then print its table; returns the number that failed."""
    started = time.time()
    finished, failures = _sweep_progress(console, sweep_mod, plan, todo, root, out, shipped, with_dataset)
    console.print(f"{len(finished)} run(s) done, {failures} failed, {len(todo.existing)} skipped in {time.time() - started:.1f}s")
    print_results(console, todo.existing + finished,
                  f"results of this sweep ({len(finished)} new, {len(todo.existing)} existing run(s))", out)
    return failures


def _sweep_progress(console: Console, sweep_mod, plan, todo, root, out, shipped, with_dataset: bool) -> tuple[list[Loaded], int]:
    """Run the sweep's remaining configs on a RunBoard (a line per running run where the executor
    reports progress: local, not Ray), a line printed per finished or failed run."""
    finished: list[Loaded] = []
    failures = 0
    if not todo.configs:
        return finished, failures
    with run_board(console, len(todo.configs), "sweep") as board:
        lines: dict[int, RunLine] = {}
        ended: set[int] = set()
        index_of = {id(cfg): i for i, cfg in enumerate(todo.configs)}

        def on_progress(index: int, stage: str, done: int, total: int) -> None:
            if index in ended:  # a late report of a run already over
                return
            if index not in lines:
                lines[index] = board.add_run(run_label(todo.configs[index], with_dataset))
            lines[index](stage, done, total)

        def on_done(cfg, outcome) -> None:
            nonlocal failures
            index = index_of.get(id(cfg))
            ended.add(index)
            if index in lines:
                lines.pop(index).close()
            board.advance()
            label = run_label(cfg, with_dataset)
            if outcome.error is not None:
                failures += 1
                board.console.print(f"[red]{escape(label)}: failed[/]: {escape(outcome.error)}", soft_wrap=True,
                                    highlight=False)
                return
            print_finished(board.console, label, outcome.run_dir, outcome.record)
            finished.append(Loaded(outcome.run_dir / "record.json", outcome.record))

        sweep_mod.execute(plan, todo.configs, root, out, on_done, shipped, todo.resume, on_progress=on_progress)
    return finished, failures


def write_table_text(console: Console, err: Console, table, fmt: str, baseline: str, paper: bool, output: Path | None) -> None:
    from dinbench import publish

    text, note = publish.table_text(table, fmt, baseline, paper)
    if note:
        err.print(f"[yellow]note:[/] {note}")
    if output is None:
        console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    else:
        from dinbench.atomic import write_atomic
        write_atomic(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        console.print(f"wrote {output}")


def print_paper(console: Console, table) -> None:
    from dinbench import paper as paper_mod
    from dinbench import publish

    for title, rows in publish.paper_side_by_side(table):
        if rows is None:
            console.print(title)
            continue
        t = Table(title=title)
        for h in publish.PAPER_COLUMNS:
            t.add_column(h, justify="right" if h in ("GAUC", "AUC") else "left")
        for r in rows:
            t.add_row(*r)
        console.print(t)
    console.print(paper_mod.PROTOCOL_NOTE, highlight=False)


def write_report_files(console: Console, err: Console, loaded, runs, table, baseline, paper, report_dir, plot_dir, data_root, results_root) -> None:
    """--output DIR and/or --plots DIR, with a progress line per figure."""
    from dinbench import publish

    load_prepared = publish.PreparedCache(data_root)
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("figures")

        def step(what: str) -> None:
            bar.update(task, description=what)

        if report_dir is not None:
            path = publish.write_report_dir(report_dir, loaded, runs, table, baseline, with_paper=paper,
                                            results_dir=results_root, load_prepared=load_prepared, progress=step)
            console.print(f"wrote {path} (tables, plots/ and report.md in {report_dir}/)")
        if plot_dir is not None:
            sections = publish.make_figures(loaded, runs, table, plot_dir, plot_dir, load_prepared, progress=step)
            n = sum(len(s.figures) for s in sections)
            console.print(f"wrote {n} plot(s) as PNG and SVG to {plot_dir}/")
            for s in sections:
                for note in s.notes:
                    err.print(f"[yellow]note:[/] {escape(s.title)}: {escape(note)}", highlight=False, soft_wrap=True)


def stale_lines(stale: list[Loaded], out: Path) -> list[str]:
    """One line per stale run (see ``records.stale_runs``): what it was and how to get rid of it."""
    discard = "dinbench report --discard-stale" + ("" if out == paths.results_dir() else f" --results-dir {out}")
    lines = []
    for item in stale:
        r = item.record
        lines.append(f"stale run {item.path.parent.name} ({r.get('pooler')} seed {r.get('seed')} on "
                     f"{(r.get('dataset') or {}).get('name')}): its record says running but its process "
                     f"{r.get('pid')} on this machine is gone (killed?); it cannot resume: delete "
                     f"{item.path.parent}/ or run `{discard}`, then train it again")
    return lines


def handle_stale(console: Console, err: Console, loaded: list[Loaded], out: Path, discard: bool) -> list[Loaded]:
    """Name the stale runs in ``loaded`` (one warning each), or delete their folders with ``discard``;
    returns ``loaded`` without the discarded ones."""
    import shutil

    from dinbench.records import stale_runs

    stale = stale_runs(loaded)
    if not discard:
        for line in stale_lines(stale, out):
            err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
        return loaded
    for item in stale:
        shutil.rmtree(item.path.parent)
        console.print(f"discarded stale run {item.path.parent.name} (deleted {item.path.parent}/)", highlight=False,
                      soft_wrap=True)
    gone = {id(item) for item in stale}
    return [item for item in loaded if id(item) not in gone]


def tabulate(err: Console, out: Path, baseline: str, dataset: str | None, pooler: str | None,
             console: Console | None = None, discard_stale: bool = False):
    """The records in ``out`` and their table, with the warnings and notes printed (stale runs
    named, or with ``discard_stale`` deleted)."""
    from dinbench.records import load_records

    loaded, warnings = load_records(out)
    for w in warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    loaded = handle_stale(console or err, err, loaded, out, discard_stale)
    runs, table, notes = _report().build(_report().runs_frame(loaded), baseline, dataset, pooler, out)
    for note in notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    return loaded, runs, table


def print_poolers(console: Console) -> None:
    table = Table(title="poolers")
    for col in ("name", "variants", "options", "description"):
        table.add_column(col)
    for name, entry in poolers.REGISTRY.items():
        variants = ", ".join(f"{name}:{v}" + (" (default)" if i == 0 else "") for i, v in enumerate(entry.variants))
        opts = ", ".join(f"{o.flag} {o.describe_default()[1:-1]}" for o in poolers.options(name))
        table.add_row(name, variants or "—", opts or "—", escape(entry.info.description))
    console.print(table)
    console.print(f"default set of `dinbench run`: {', '.join(poolers.DEFAULT_POOLERS)}; 'all' = every pooler and variant")


def print_datasets(console: Console, root: Path, embedded: dict[str, str], stats: bool) -> None:
    """The prepared datasets (with their counts under ``stats``), else also the ones to download."""
    from dinbench.prepared import contract
    from dinbench.prepared import stats as stats_mod
    from dinbench.sources import registry

    names = stats_mod.known(root, embedded)
    table = Table(title=f"datasets in {root}")
    for col in stats_mod.LISTING_COLUMNS:
        table.add_column(col, justify="right" if col in stats_mod.NUMERIC_COLUMNS else "left", no_wrap=col == "name")
    for row in stats_mod.listing(root, names):
        table.add_row(*row)
    console.print(table)
    if stats:
        for name in names:
            if contract.is_prepared(root, name):
                console.print(stats_table(stats_mod.dataset_stats(root, name)))
        return
    more = Table(title="real datasets: dinbench download NAME (--from PATH for files you have)")
    more.add_column("name")
    more.add_column("about")
    for spec in registry.REGISTRY.values():
        if spec.name not in names:
            more.add_row(spec.name + (" *" if spec.paper else ""), spec.about)
    more.caption = "* a dataset of the DIN paper"
    console.print(more)


def warn_stale(err: Console, out: Path) -> None:
    """A warning line per stale run in ``out`` (``sweep`` runs them again in new folders)."""
    from dinbench.records import load_records, stale_runs

    for line in stale_lines(stale_runs(load_records(out)[0]), out):
        err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
